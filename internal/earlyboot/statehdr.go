package earlyboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kubedos/kubedos/internal/tpmseal"
)

// The state partition is encrypted with plain dm-crypt; what the kernel
// needs besides the key (cipher, where the data starts) and the key itself,
// sealed to the TPM, sit in a header of our own in the partition's first
// 4 KiB. LUKS would do, but its parser is cryptsetup's (a large C program
// and its libraries in the initrd); this header is one fixed struct.
//
// Layout (little-endian), StateHeaderSize bytes:
//
//	0    8  magic "KDSTATE\x00"
//	8    2  version (1)
//	10   2  flags (bit 0: filesystem not yet written)
//	12   4  cipher (1: aes-xts-plain64, 512-bit key, 4 KiB sectors)
//	16   8  data offset in bytes (multiple of 4 KiB, ≥ StateHeaderSize)
//	24   8  data size in bytes (multiple of 4 KiB, > 0)
//	32   4  PCR mask the key is sealed to (bit n: PCR n)
//	36   4  sealed key length n (1..MaxSealedKey)
//	40   n  sealed key: a tpmseal blob when the mask is PCR 7 and 11 (PCR 7
//	        and a PCR 11 the platform's PCR policy key signed); go-tpm-tools
//	        SealedBytes (protobuf) under PCR 7 alone on disks made before
//	…       zeros
//	4064 32 SHA-256 of bytes 0..4063
//
// The checksum catches a torn or damaged header; it is no defence against
// an attacker, who gains nothing by rewriting it: the key is only released
// by the TPM, and a different key only decrypts to noise.

const (
	StateHeaderSize  = 4096
	StateDataOffset  = 1 << 20 // the first MiB is the header's, so the data stays aligned
	MaxSealedKey     = StateHeaderSize - 40 - sha256.Size
	stateMagic       = "KDSTATE\x00"
	stateVersion     = 1
	CipherAESXTS     = 1
	StateKeySize     = 64 // aes-xts-plain64 with AES-256: two 256-bit keys
	stateSectorSize  = 4096
	stateChecksumOff = StateHeaderSize - sha256.Size
)

// signedPCRMask is the header's mask for a key sealed by tpmseal.
const signedPCRMask = 1<<7 | 1<<11

// Errors reading a state header.
var (
	// ErrNoStateHeader: the partition does not start with a kubedos header.
	ErrNoStateHeader = errors.New("no kubedos state header")
	// ErrStateHeader: a header is there but damaged or not one we read.
	ErrStateHeader = errors.New("bad kubedos state header")
)

// StateHeader is the decoded header.
type StateHeader struct {
	Flags      uint16 // stateFlagFormatting or 0
	Cipher     uint32
	DataOffset uint64
	DataSize   uint64
	PCRMask    uint32
	SealedKey  []byte
}

// PCRs lists the PCRs of the mask, lowest first.
func (h StateHeader) PCRs() []int {
	var out []int
	for i := 0; i < 32; i++ {
		if h.PCRMask&(1<<i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// PCRMask makes a mask from PCR indices (0..23, as a TPM 2.0 has).
func PCRMask(pcrs []int) (uint32, error) {
	var m uint32
	for _, p := range pcrs {
		if p < 0 || p > 23 {
			return 0, fmt.Errorf("PCR %d out of range", p)
		}
		m |= 1 << p
	}
	return m, nil
}

func (h StateHeader) validate() error {
	switch {
	case h.Flags&^stateFlagFormatting != 0:
		return fmt.Errorf("%w: unknown flags %#x", ErrStateHeader, h.Flags)
	case h.Cipher != CipherAESXTS:
		return fmt.Errorf("%w: cipher %d (want %d, aes-xts-plain64)", ErrStateHeader, h.Cipher, CipherAESXTS)
	case h.DataOffset < StateHeaderSize || h.DataOffset%stateSectorSize != 0:
		return fmt.Errorf("%w: data offset %d is not a multiple of %d at or after the header", ErrStateHeader, h.DataOffset, stateSectorSize)
	case h.DataSize == 0 || h.DataSize%stateSectorSize != 0:
		return fmt.Errorf("%w: data size %d is not a positive multiple of %d", ErrStateHeader, h.DataSize, stateSectorSize)
	case h.DataOffset > 1<<50 || h.DataSize > 1<<50:
		return fmt.Errorf("%w: data extent %d+%d is implausible", ErrStateHeader, h.DataOffset, h.DataSize)
	case h.PCRMask == 0 || h.PCRMask>>24 != 0:
		return fmt.Errorf("%w: PCR mask %#x (want PCRs among 0..23, at least one)", ErrStateHeader, h.PCRMask)
	case len(h.SealedKey) == 0 || len(h.SealedKey) > MaxSealedKey:
		return fmt.Errorf("%w: sealed key of %d bytes (want 1..%d)", ErrStateHeader, len(h.SealedKey), MaxSealedKey)
	case tpmseal.IsBlob(h.SealedKey) != (h.PCRMask == signedPCRMask):
		// The mask says which sealing the key has: PCR 7 and a signed PCR
		// 11 (a tpmseal blob), or anything else (a go-tpm-tools blob).
		return fmt.Errorf("%w: PCR mask %#x does not match the sealed key's format", ErrStateHeader, h.PCRMask)
	}
	return nil
}

// MarshalStateHeader encodes h in StateHeaderSize bytes.
func MarshalStateHeader(h StateHeader) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, StateHeaderSize)
	copy(b, stateMagic)
	le := binary.LittleEndian
	le.PutUint16(b[8:], stateVersion)
	le.PutUint16(b[10:], h.Flags)
	le.PutUint32(b[12:], h.Cipher)
	le.PutUint64(b[16:], h.DataOffset)
	le.PutUint64(b[24:], h.DataSize)
	le.PutUint32(b[32:], h.PCRMask)
	le.PutUint32(b[36:], uint32(len(h.SealedKey)))
	copy(b[40:], h.SealedKey)
	sum := sha256.Sum256(b[:stateChecksumOff])
	copy(b[stateChecksumOff:], sum[:])
	return b, nil
}

// ParseStateHeader decodes the first StateHeaderSize bytes of a state
// partition. Anything but a well-formed version 1 header is refused:
// ErrNoStateHeader when the magic is absent, ErrStateHeader otherwise.
func ParseStateHeader(b []byte) (StateHeader, error) {
	if len(b) < StateHeaderSize {
		return StateHeader{}, fmt.Errorf("%w: %d bytes, want %d", ErrStateHeader, len(b), StateHeaderSize)
	}
	b = b[:StateHeaderSize]
	if string(b[:8]) != stateMagic {
		return StateHeader{}, ErrNoStateHeader
	}
	if sum := sha256.Sum256(b[:stateChecksumOff]); !bytes.Equal(sum[:], b[stateChecksumOff:]) {
		return StateHeader{}, fmt.Errorf("%w: checksum mismatch (torn or damaged)", ErrStateHeader)
	}
	le := binary.LittleEndian
	if v := le.Uint16(b[8:]); v != stateVersion {
		return StateHeader{}, fmt.Errorf("%w: version %d (this kubedos-init reads %d)", ErrStateHeader, v, stateVersion)
	}
	if f := le.Uint16(b[10:]); f&^stateFlagFormatting != 0 {
		return StateHeader{}, fmt.Errorf("%w: unknown flags %#x", ErrStateHeader, f)
	}
	n := le.Uint32(b[36:])
	if n == 0 || n > MaxSealedKey {
		return StateHeader{}, fmt.Errorf("%w: sealed key of %d bytes (want 1..%d)", ErrStateHeader, n, MaxSealedKey)
	}
	for _, c := range b[40+n : stateChecksumOff] {
		if c != 0 {
			return StateHeader{}, fmt.Errorf("%w: bytes after the sealed key are not zero", ErrStateHeader)
		}
	}
	h := StateHeader{
		Flags:      le.Uint16(b[10:]),
		Cipher:     le.Uint32(b[12:]),
		DataOffset: le.Uint64(b[16:]),
		DataSize:   le.Uint64(b[24:]),
		PCRMask:    le.Uint32(b[32:]),
		SealedKey:  append([]byte(nil), b[40:40+n]...),
	}
	if err := h.validate(); err != nil {
		return StateHeader{}, err
	}
	return h, nil
}
