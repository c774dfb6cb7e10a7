package earlyboot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kubedos/kubedos/internal/tpmseal"
)

// Device-mapper names of the decrypted state and data.
const (
	StateMapName = "kubedos-state"
	DataMapName  = "kubedos-data"
)

// StateDeps is what OpenState works with: the real TPM and device mapper
// in the initrd, a simulator and files in tests.
type StateDeps struct {
	OpenTPM func() (io.ReadWriteCloser, error)
	Rand    io.Reader // the kernel's random numbers (crypto/rand)
	// Map creates the crypt mapping and returns the path of its device.
	Map func(name string, p CryptParams) (string, error)
	// FS is the empty state filesystem in the sparse format (StateFSFile),
	// written through the mapping at first boot.
	FS []byte
	// Policy is the UKI's signed PCR policy: what a new key is sealed to
	// and what unlocks it.
	Policy StatePolicy
	Logf   func(format string, args ...any)
	// Name is the partition's label, "state" (the default) or "data": it
	// starts every message and names the mapping kubedos-<Name>.
	Name string
}

func (d StateDeps) name() string {
	if d.Name == "" {
		return LabelState
	}
	return d.Name
}

func (d StateDeps) mapName() string { return "kubedos-" + d.name() }

// Errors of OpenState that refuse to touch the partition.
var (
	// ErrStateNotBlank: no header, but the partition is not blank either.
	ErrStateNotBlank = errors.New("state partition has no kubedos header and is not blank")
	// ErrStatePlaintext: the partition holds a plaintext ext4 filesystem.
	ErrStatePlaintext = errors.New("state partition holds a plaintext ext4 filesystem")
)

// stateFlagFormatting marks a header written before the filesystem: a boot
// that finds it finishes the format with the sealed key.
const stateFlagFormatting = 1

// OpenState opens the encrypted state on partition part and returns the
// path of the decrypted device. A blank partition (first boot) gets a new
// key from the TPM and the kernel, sealed to StatePCRs under d.Policy, a header and the
// empty filesystem; a partition with a header is unlocked with the key the
// TPM unseals. Anything else is refused without writing: a header that
// does not parse, a key the TPM will not unseal (ErrStateSealed), a
// missing header over written data. Nothing is ever reformatted.
func OpenState(part string, d StateDeps) (string, error) {
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("%s: %w", d.name(), err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", fmt.Errorf("%s: size of %s: %w", d.name(), part, err)
	}
	hdr := make([]byte, StateHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return "", fmt.Errorf("%s: read the header of %s: %w", d.name(), part, err)
	}
	h, err := ParseStateHeader(hdr)
	switch {
	case errors.Is(err, ErrNoStateHeader):
		if err := checkBlank(f, hdr, size); err != nil {
			return "", fmt.Errorf("%s: %s: %w; refusing to format over it", d.name(), part, err)
		}
		return createState(f, part, size, d)
	case err != nil:
		return "", fmt.Errorf("%s: %s: %w; refusing to format over it", d.name(), part, err)
	}
	if h.DataOffset+h.DataSize > uint64(size) {
		return "", fmt.Errorf("%s: %s: %w: data %d+%d past the partition's end (%d bytes)", d.name(), part, ErrStateHeader, h.DataOffset, h.DataSize, size)
	}
	start := time.Now()
	key, err := withTPM(d, func(tpm io.ReadWriter) ([]byte, error) { return UnsealStateKey(tpm, h.SealedKey, d.Policy) })
	if err != nil {
		return "", fmt.Errorf("%s: %w", d.name(), err)
	}
	p := CryptParams{Device: part, Key: key, Offset: h.DataOffset, Size: h.DataSize}
	dev, err := d.Map(d.mapName(), p)
	if err != nil {
		return "", fmt.Errorf("%s: map %s: %w", d.name(), part, err)
	}
	if h.Flags&stateFlagFormatting != 0 {
		d.Logf("%s: a power cut interrupted the first format; finishing it", d.name())
		if err := formatState(d.name(), f, dev, h, d.FS); err != nil {
			return "", err
		}
	}
	policy := "PCR " + pcrList(h.PCRs())
	if tpmseal.IsBlob(h.SealedKey) {
		policy = "PCR 7 and a signed PCR 11"
	}
	d.Logf("%s: unlocked %s (aes-xts-plain64, key sealed to %s) on %s in %s", d.name(), part, policy, dev, time.Since(start).Round(time.Millisecond))
	return dev, nil
}

// checkBlank accepts a partition whose header area and first data sector
// are zero: never written. A wiped header over data is not blank.
func checkBlank(f *os.File, hdr []byte, size int64) error {
	if len(hdr) > 1081 && hdr[1080] == 0x53 && hdr[1081] == 0xef {
		return fmt.Errorf("%w (made by a build before state encryption)", ErrStatePlaintext)
	}
	if !allZeroBytes(hdr) {
		return ErrStateNotBlank
	}
	if size < StateDataOffset+stateSectorSize {
		return nil // too small: createState says so
	}
	first := make([]byte, stateSectorSize)
	if _, err := f.ReadAt(first, StateDataOffset); err != nil {
		return err
	}
	if !allZeroBytes(first) {
		return fmt.Errorf("%w: the header is zero but the data area is not (a wiped header?)", ErrStateNotBlank)
	}
	return nil
}

func createState(f *os.File, part string, size int64, d StateDeps) (string, error) {
	start := time.Now()
	fsSize, err := SparseSize(d.FS)
	if err != nil {
		return "", fmt.Errorf("%s: the initrd's state filesystem: %w", d.name(), err)
	}
	dataSize := (size - StateDataOffset) / stateSectorSize * stateSectorSize
	if dataSize < fsSize {
		return "", fmt.Errorf("%s: %s is %d bytes, too small for the %d-byte header area and the %d-byte filesystem", d.name(), part, size, StateDataOffset, fsSize)
	}
	mask, err := PCRMask(StatePCRs)
	if err != nil {
		return "", err
	}
	var key []byte
	sealed, err := withTPM(d, func(tpm io.ReadWriter) ([]byte, error) {
		var err error
		if key, err = NewStateKey(tpm, d.Rand); err != nil {
			return nil, err
		}
		return SealStateKey(tpm, key, d.Policy)
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", d.name(), err)
	}
	h := StateHeader{Flags: stateFlagFormatting, Cipher: CipherAESXTS, DataOffset: StateDataOffset, DataSize: uint64(dataSize), PCRMask: mask, SealedKey: sealed}
	// The header goes first, marked formatting: a power cut from here on
	// leaves a key to finish with, never ciphertext without its key.
	if err := writeHeader(d.name(), f, h); err != nil {
		return "", err
	}
	dev, err := d.Map(d.mapName(), CryptParams{Device: part, Key: key, Offset: StateDataOffset, Size: uint64(dataSize)})
	if err != nil {
		return "", fmt.Errorf("%s: map %s: %w", d.name(), part, err)
	}
	if err := formatState(d.name(), f, dev, h, d.FS); err != nil {
		return "", err
	}
	d.Logf("%s: made a new encrypted %[1]s on %s (aes-xts-plain64, 512-bit key sealed to PCR 7 and a signed PCR 11, key %.16s…) in %s", d.name(), part, tpmseal.Fingerprint(d.Policy.Key), time.Since(start).Round(time.Millisecond))
	return dev, nil
}

// formatState writes the empty filesystem through the mapping dev, then
// the header without the formatting flag.
func formatState(name string, f *os.File, dev string, h StateHeader, fs []byte) error {
	m, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer m.Close()
	if _, err := WriteSparse(m, fs); err != nil {
		return fmt.Errorf("%s: write the filesystem to %s: %w", name, dev, err)
	}
	if err := m.Sync(); err != nil {
		return fmt.Errorf("%s: flush %s: %w", name, dev, err)
	}
	h.Flags &^= stateFlagFormatting
	return writeHeader(name, f, h)
}

func writeHeader(name string, f *os.File, h StateHeader) error {
	b, err := MarshalStateHeader(h)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("%s: write the header: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: flush the header: %w", name, err)
	}
	return nil
}

func withTPM(d StateDeps, fn func(io.ReadWriter) ([]byte, error)) (out []byte, err error) {
	tpm, err := d.OpenTPM()
	if err != nil {
		return nil, fmt.Errorf("open the TPM: %w", err)
	}
	defer func() {
		if cerr := tpm.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close the TPM: %w", cerr)
		}
	}()
	return fn(tpm)
}
