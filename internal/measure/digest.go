package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// DigestSize is the size of a sha256 digest, the only bank handled here.
const DigestSize = sha256.Size

// ErrInput classifies bad inputs to the prediction functions.
var ErrInput = errors.New("invalid measurement input")

// Digest is a sha256 digest; it is written as lower-case hex in JSON.
type Digest []byte

// String returns the digest as lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d) }

// MarshalText encodes the digest as hex.
func (d Digest) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(d)), nil
}

// UnmarshalText decodes a hex digest and checks its size.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("digest %q: %w", b, err)
	}
	if len(v) != DigestSize {
		return fmt.Errorf("digest %q: %d bytes, want %d", b, len(v), DigestSize)
	}
	*d = v
	return nil
}

// sum returns sha256(b).
func sum(b []byte) Digest {
	s := sha256.Sum256(b)
	return s[:]
}

// Extend returns sha256(pcr ‖ digest), the TPM2_PCR_Extend operation.
func Extend(pcr, digest []byte) []byte {
	h := sha256.New()
	h.Write(pcr)
	h.Write(digest)
	return h.Sum(nil)
}

// Replay returns the value of a PCR that starts at zero and is extended with
// the digest of each event in order. All events must be for the same PCR and
// carry sha256 digests.
func Replay(events []Event) ([]byte, error) {
	v := make([]byte, DigestSize)
	for i, e := range events {
		if e.PCR != events[0].PCR {
			return nil, fmt.Errorf("%w: event %d is for PCR %d, event 0 for PCR %d", ErrInput, i, e.PCR, events[0].PCR)
		}
		if len(e.Digest) != DigestSize {
			return nil, fmt.Errorf("%w: event %d (PCR %d): digest has %d bytes, want %d", ErrInput, i, e.PCR, len(e.Digest), DigestSize)
		}
		v = Extend(v, e.Digest)
	}
	return v, nil
}

// checkDigest reports an error naming what when d is not a sha256 digest.
func checkDigest(what string, d []byte) error {
	if len(d) != DigestSize {
		return fmt.Errorf("%w: %s: digest has %d bytes, want %d (sha256)", ErrInput, what, len(d), DigestSize)
	}
	return nil
}
