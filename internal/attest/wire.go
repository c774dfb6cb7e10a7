package attest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/kubedos/kubedos/internal/measure"
)

// The wire structs below travel between node and hub as JSON (byte fields as
// base64). They are transport-agnostic: the API layer carries them as they
// are. Every field is untrusted on the hub until the checks have passed.

// Identity is what a node presents first: its TPM's endorsement key and a
// fresh attestation key.
type Identity struct {
	// EKPublic is the RSA endorsement key's public key, PKIX DER.
	EKPublic []byte `json:"ekPublic"`
	// EKCertificate is the EK certificate (DER) from the TPM's NV index
	// 0x01c00002, when the TPM has one.
	EKCertificate []byte `json:"ekCertificate,omitempty"`
	// AK describes the attestation key the node created in the same TPM.
	AK AKParameters `json:"ak"`
}

// AKParameters are go-attestation's AttestationParameters for a TPM 2.0 AK:
// the key and the TPM's own statement (TPM2_CertifyCreation, signed by the AK)
// that it created the key.
type AKParameters struct {
	// Public is the AK's TPMT_PUBLIC. The hub keeps it to verify quotes.
	Public []byte `json:"public"`
	// CreateData is the TPMS_CREATION_DATA of the key.
	CreateData []byte `json:"createData"`
	// CreateAttestation is the TPMS_ATTEST over the creation data.
	CreateAttestation []byte `json:"createAttestation"`
	// CreateSignature is the TPMT_SIGNATURE of CreateAttestation by the AK.
	CreateSignature []byte `json:"createSignature"`
}

// Challenge is a credential activation challenge: a secret only the TPM that
// holds both the EK and the AK can recover (TPM2_ActivateCredential).
type Challenge struct {
	// Credential is the TPM2B_ID_OBJECT (the secret, encrypted and bound to
	// the AK's name).
	Credential []byte `json:"credential"`
	// Secret is the TPM2B_ENCRYPTED_SECRET (the seed, encrypted to the EK).
	Secret []byte `json:"secret"`
}

// Evidence is a node's answer to a nonce: a quote, the quoted PCR values and
// the TCG event log.
type Evidence struct {
	// Quote is the TPMS_ATTEST the TPM produced (TPM2_Quote).
	Quote []byte `json:"quote"`
	// Signature is the AK's TPMT_SIGNATURE over Quote.
	Signature []byte `json:"signature"`
	// PCRs are the sha256-bank values of exactly the quoted PCRs.
	PCRs map[int]measure.Digest `json:"pcrs"`
	// EventLog is the TCG2 crypto-agile event log
	// (/sys/kernel/security/tpm0/binary_bios_measurements).
	EventLog []byte `json:"eventLog"`
}

// Sizes accepted from the wire.
const (
	// NonceSize is the size of a nonce from NewNonce.
	NonceSize = 32
	// MaxNonceSize is the largest qualifying data any TPM takes (TPM2B_DATA
	// holds a TPMT_HA; 64 bytes needs SHA-512 support). NonceSize fits
	// every TPM 2.0.
	MaxNonceSize = 64
	// MaxEventLogSize bounds an event log (OVMF's is about 7 KiB; large
	// servers log a few hundred KiB).
	MaxEventLogSize = 4 << 20
	// MaxMessageSize bounds one encoded wire struct.
	MaxMessageSize = 2*MaxEventLogSize + 64<<10

	maxTPMStruct = 4 << 10  // TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE…
	maxEKCert    = 64 << 10 // EK certificates are 1–2 KiB
	maxPCRIndex  = 23
)

// ErrMalformed classifies wire structs that do not decode or lack fields.
var ErrMalformed = errors.New("malformed attestation message")

// NewNonce returns NonceSize random bytes. Issuing, expiring and spending
// nonces (single use) is the hub's job.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return n, nil
}

// DecodeIdentity strictly decodes and validates an Identity.
func DecodeIdentity(b []byte) (Identity, error) {
	var v Identity
	if err := decodeStrict(b, &v, "identity"); err != nil {
		return Identity{}, err
	}
	return v, v.Validate()
}

// DecodeChallenge strictly decodes and validates a Challenge.
func DecodeChallenge(b []byte) (Challenge, error) {
	var v Challenge
	if err := decodeStrict(b, &v, "challenge"); err != nil {
		return Challenge{}, err
	}
	return v, v.Validate()
}

// DecodeEvidence strictly decodes and validates an Evidence.
func DecodeEvidence(b []byte) (Evidence, error) {
	var v Evidence
	if err := decodeStrict(b, &v, "evidence"); err != nil {
		return Evidence{}, err
	}
	return v, v.Validate()
}

// decodeStrict decodes one JSON value into v: size-limited, unknown fields
// refused, nothing after the value.
func decodeStrict(b []byte, v any, what string) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: %s: %d bytes, at most %d", ErrMalformed, what, len(b), MaxMessageSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: %s: data after the JSON value", ErrMalformed, what)
	}
	return nil
}

// fieldCheck collects every problem of a wire struct.
type fieldCheck struct {
	what string
	errs []error
}

func (c *fieldCheck) bytes(name string, b []byte, required bool, limit int) {
	switch {
	case required && len(b) == 0:
		c.errs = append(c.errs, fmt.Errorf("%w: %s.%s: missing", ErrMalformed, c.what, name))
	case len(b) > limit:
		c.errs = append(c.errs, fmt.Errorf("%w: %s.%s: %d bytes, at most %d", ErrMalformed, c.what, name, len(b), limit))
	}
}

func (c *fieldCheck) err() error { return errors.Join(c.errs...) }

// Validate reports every missing or oversized field.
func (id Identity) Validate() error {
	c := fieldCheck{what: "identity"}
	c.bytes("ekPublic", id.EKPublic, true, maxTPMStruct)
	c.bytes("ekCertificate", id.EKCertificate, false, maxEKCert)
	c.bytes("ak.public", id.AK.Public, true, maxTPMStruct)
	c.bytes("ak.createData", id.AK.CreateData, true, maxTPMStruct)
	c.bytes("ak.createAttestation", id.AK.CreateAttestation, true, maxTPMStruct)
	c.bytes("ak.createSignature", id.AK.CreateSignature, true, maxTPMStruct)
	return c.err()
}

// Validate reports every missing or oversized field.
func (ch Challenge) Validate() error {
	c := fieldCheck{what: "challenge"}
	c.bytes("credential", ch.Credential, true, maxTPMStruct)
	c.bytes("secret", ch.Secret, true, maxTPMStruct)
	return c.err()
}

// Validate reports every missing or oversized field and every PCR index
// outside 0–23 or value that is not a sha256 digest.
func (ev Evidence) Validate() error {
	c := fieldCheck{what: "evidence"}
	c.bytes("quote", ev.Quote, true, maxTPMStruct)
	c.bytes("signature", ev.Signature, true, maxTPMStruct)
	c.bytes("eventLog", ev.EventLog, true, MaxEventLogSize)
	if len(ev.PCRs) == 0 {
		c.errs = append(c.errs, fmt.Errorf("%w: evidence.pcrs: missing", ErrMalformed))
	}
	idx := make([]int, 0, len(ev.PCRs))
	for i := range ev.PCRs {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		if i < 0 || i > maxPCRIndex {
			c.errs = append(c.errs, fmt.Errorf("%w: evidence.pcrs: PCR index %d outside 0–%d", ErrMalformed, i, maxPCRIndex))
		}
		if len(ev.PCRs[i]) != measure.DigestSize {
			c.errs = append(c.errs, fmt.Errorf("%w: evidence.pcrs[%d]: %d bytes, want a %d-byte sha256 value", ErrMalformed, i, len(ev.PCRs[i]), measure.DigestSize))
		}
	}
	return c.err()
}
