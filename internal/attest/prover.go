package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"golang.org/x/sys/unix"

	"github.com/kubedos/kubedos/internal/measure"
)

// Where a Linux node finds its TPM and the firmware's event log.
const (
	DefaultTPMPath      = "/dev/tpmrm0"
	DefaultEventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"
)

// DefaultPCRs are the PCRs quoted and checked: boot loader code (4), Secure
// Boot policy (7) and the UKI (11).
var DefaultPCRs = []int{measure.PCRBootLoaderCode, measure.PCRSecureBootPolicy, measure.PCRKernelImage}

// ErrProver classifies failures of the node side (TPM errors, misuse).
var ErrProver = errors.New("attestation prover")

// quoteAttempts bounds the retries when a PCR is extended between the quote
// and reading the PCR values (systemd-pcrphase may run meanwhile).
const quoteAttempts = 3

// Prover is the node side of enrollment, over one TPM. It creates a fresh
// attestation key on first use of Identity and keeps it in the TPM until
// Close; the AK is not persisted across reboots (re-enrollment makes a new
// one). Getting the EK and the AK may persist the standard EK
// (0x81010001) and SRK (0x81000001) handles, as go-attestation does.
// A Prover is safe for concurrent use; TPM commands are serialised.
type Prover struct {
	mu  sync.Mutex
	rwc io.ReadWriteCloser
	tpm *attest.TPM
	log []byte
	ek  *attest.EK
	ak  *attest.AK
}

// channel makes a TPM connection a go-attestation command channel.
type channel struct {
	io.ReadWriteCloser
	log []byte
}

func (c channel) MeasurementLog() ([]byte, error) { return bytes.Clone(c.log), nil }

// NewProver returns a Prover over rwc, a TPM 2.0 command channel (the
// kernel's resource manager /dev/tpmrm0 on a node, a simulator in tests),
// with the node's TCG event log. Close closes rwc.
func NewProver(rwc io.ReadWriteCloser, eventLog []byte) (*Prover, error) {
	if rwc == nil {
		return nil, fmt.Errorf("%w: no TPM channel", ErrProver)
	}
	log := bytes.Clone(eventLog)
	tpm, err := attest.OpenTPM(&attest.OpenConfig{CommandChannel: channel{ReadWriteCloser: rwc, log: log}})
	if err != nil {
		return nil, fmt.Errorf("%w: open TPM: %v", ErrProver, err)
	}
	return &Prover{rwc: rwc, tpm: tpm, log: log}, nil
}

// OpenProver opens the TPM device and reads the event log at the given paths
// (DefaultTPMPath and DefaultEventLogPath on a node).
func OpenProver(tpmPath, eventLogPath string) (*Prover, error) {
	log, err := os.ReadFile(eventLogPath)
	if err != nil {
		return nil, fmt.Errorf("%w: event log: %v", ErrProver, err)
	}
	// Blocking mode, deliberately: os.OpenFile makes a character device
	// non-blocking, and then the kernel's TPM driver runs each command
	// asynchronously and a read issued before the response is ready returns
	// nothing; the unread response then makes the next write fail with EBUSY.
	// Blocking writes execute the command before they return.
	fd, err := unix.Open(tpmPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: TPM %s: %v", ErrProver, tpmPath, err)
	}
	f := os.NewFile(uintptr(fd), tpmPath)
	p, err := NewProver(f, log)
	if err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

// Close unloads the AK and closes the TPM channel.
func (p *Prover) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.ak != nil {
		if err := p.ak.Close(p.tpm); err != nil {
			errs = append(errs, fmt.Errorf("%w: unload AK: %v", ErrProver, err))
		}
		p.ak = nil
	}
	if p.tpm != nil {
		if err := p.tpm.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%w: close TPM: %v", ErrProver, err))
		}
		p.tpm = nil
	}
	return errors.Join(errs...)
}

// Identity returns the TPM's RSA EK (with its certificate when NV holds one)
// and the parameters of the Prover's AK, creating the AK on first call.
func (p *Prover) Identity() (Identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tpm == nil {
		return Identity{}, fmt.Errorf("%w: closed", ErrProver)
	}
	if p.ek == nil {
		eks, err := p.tpm.EKs()
		if err != nil {
			return Identity{}, fmt.Errorf("%w: read EK: %v", ErrProver, err)
		}
		if len(eks) == 0 {
			return Identity{}, fmt.Errorf("%w: TPM has no EK", ErrProver)
		}
		p.ek = &eks[0]
	}
	if p.ak == nil {
		ak, err := p.tpm.NewAK(nil)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: create AK: %v", ErrProver, err)
		}
		p.ak = ak
	}
	der, err := x509.MarshalPKIXPublicKey(p.ek.Public)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: EK public: %v", ErrProver, err)
	}
	id := Identity{EKPublic: der, AK: akParameters(p.ak.AttestationParameters())}
	if p.ek.Certificate != nil {
		id.EKCertificate = bytes.Clone(p.ek.Certificate.Raw)
	}
	return id, nil
}

// EKPublic returns the TPM's RSA EK (PKIX DER) without making an AK: what a
// deploy step reads to register a machine's identity before it boots.
func (p *Prover) EKPublic() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tpm == nil {
		return nil, fmt.Errorf("%w: closed", ErrProver)
	}
	if p.ek == nil {
		eks, err := p.tpm.EKs()
		if err != nil {
			return nil, fmt.Errorf("%w: read EK: %v", ErrProver, err)
		}
		if len(eks) == 0 {
			return nil, fmt.Errorf("%w: TPM has no EK", ErrProver)
		}
		p.ek = &eks[0]
	}
	der, err := x509.MarshalPKIXPublicKey(p.ek.Public)
	if err != nil {
		return nil, fmt.Errorf("%w: EK public: %v", ErrProver, err)
	}
	return der, nil
}

// MarshalAK returns the Prover's AK as an opaque blob (the key is wrapped by
// the TPM's storage key, so the blob is useless off this TPM). A node keeps
// it on its state partition: renewal quotes must come from the AK it
// enrolled with, across reboots.
func (p *Prover) MarshalAK() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return nil, err
	}
	b, err := p.ak.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: marshal AK: %v", ErrProver, err)
	}
	return b, nil
}

// LoadAK makes the Prover use a previously marshalled AK instead of creating
// one; call it before Identity.
func (p *Prover) LoadAK(blob []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tpm == nil {
		return fmt.Errorf("%w: closed", ErrProver)
	}
	if p.ak != nil {
		return fmt.Errorf("%w: an AK is already loaded", ErrProver)
	}
	ak, err := p.tpm.LoadAK(blob)
	if err != nil {
		return fmt.Errorf("%w: load AK: %v", ErrProver, err)
	}
	p.ak = ak
	return nil
}

// ActivateCredential answers the hub's challenge: the TPM releases the secret
// only if it holds both the EK the challenge was made for and the AK.
func (p *Prover) ActivateCredential(c Challenge) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return nil, err
	}
	if p.ek == nil {
		return nil, fmt.Errorf("%w: no EK read yet: call Identity first", ErrProver)
	}
	secret, err := p.ak.ActivateCredentialWithEK(p.tpm, attest.EncryptedCredential{Credential: c.Credential, Secret: c.Secret}, *p.ek)
	if err != nil {
		return nil, fmt.Errorf("%w: activate credential: %v", ErrProver, err)
	}
	return secret, nil
}

// Quote signs the sha256-bank values of pcrs (DefaultPCRs when empty) with
// the AK over nonce, and returns the quote with those values and the event
// log. If a PCR changes between the quote and reading it, it quotes again.
func (p *Prover) Quote(nonce []byte, pcrs []int) (Evidence, error) {
	if len(pcrs) == 0 {
		pcrs = DefaultPCRs
	}
	pcrs = slices.Clone(pcrs)
	slices.Sort(pcrs)
	if len(slices.Compact(slices.Clone(pcrs))) != len(pcrs) || pcrs[0] < 0 || pcrs[len(pcrs)-1] > maxPCRIndex {
		return Evidence{}, fmt.Errorf("%w: PCRs %v: want distinct indexes 0–%d", ErrProver, pcrs, maxPCRIndex)
	}
	if len(nonce) == 0 || len(nonce) > MaxNonceSize {
		return Evidence{}, fmt.Errorf("%w: nonce of %d bytes, want 1–%d", ErrProver, len(nonce), MaxNonceSize)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return Evidence{}, err
	}
	for range quoteAttempts {
		q, err := p.ak.QuotePCRs(p.tpm, nonce, attest.HashSHA256, pcrs)
		if err != nil {
			return Evidence{}, fmt.Errorf("%w: quote: %v", ErrProver, err)
		}
		values, err := p.readPCRs(pcrs)
		if err != nil {
			return Evidence{}, err
		}
		att, err := tpm2.DecodeAttestationData(q.Quote)
		if err != nil || att.AttestedQuoteInfo == nil {
			return Evidence{}, fmt.Errorf("%w: TPM returned an undecodable quote: %v", ErrProver, err)
		}
		if !bytes.Equal(att.AttestedQuoteInfo.PCRDigest, pcrDigest(pcrs, values)) {
			continue // a PCR moved between quote and read
		}
		return Evidence{Quote: q.Quote, Signature: q.Signature, PCRs: values, EventLog: bytes.Clone(p.log)}, nil
	}
	return Evidence{}, fmt.Errorf("%w: PCRs %v kept changing while quoting (%d attempts)", ErrProver, pcrs, quoteAttempts)
}

func (p *Prover) ready() error {
	if p.tpm == nil {
		return fmt.Errorf("%w: closed", ErrProver)
	}
	// A quote needs only the AK: renewal loads the enrolled one (LoadAK)
	// and never reads the EK.
	if p.ak == nil {
		return fmt.Errorf("%w: no AK yet: call Identity first (or LoadAK)", ErrProver)
	}
	return nil
}

func (p *Prover) readPCRs(pcrs []int) (map[int]measure.Digest, error) {
	out := make(map[int]measure.Digest, len(pcrs))
	for _, i := range pcrs {
		v, err := tpm2.ReadPCR(p.rwc, i, tpm2.AlgSHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: read PCR %d: %v", ErrProver, i, err)
		}
		if len(v) != measure.DigestSize {
			return nil, fmt.Errorf("%w: PCR %d: TPM returned %d bytes for sha256", ErrProver, i, len(v))
		}
		out[i] = v
	}
	return out, nil
}

// pcrDigest is the quote's pcrDigest for sha256 PCR values: sha256 of the
// values concatenated in ascending index order (pcrs sorted).
func pcrDigest(pcrs []int, values map[int]measure.Digest) []byte {
	h := sha256.New()
	for _, i := range pcrs {
		h.Write(values[i])
	}
	return h.Sum(nil)
}

func akParameters(a attest.AttestationParameters) AKParameters {
	return AKParameters{
		Public:            bytes.Clone(a.Public),
		CreateData:        bytes.Clone(a.CreateData),
		CreateAttestation: bytes.Clone(a.CreateAttestation),
		CreateSignature:   bytes.Clone(a.CreateSignature),
	}
}

func (a AKParameters) attestation() attest.AttestationParameters {
	return attest.AttestationParameters{
		Public:            a.Public,
		CreateData:        a.CreateData,
		CreateAttestation: a.CreateAttestation,
		CreateSignature:   a.CreateSignature,
	}
}
