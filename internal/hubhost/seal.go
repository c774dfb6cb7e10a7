package hubhost

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm-tools/client"
	pb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/kubedos/kubedos/internal/tpmseal"
	"google.golang.org/protobuf/proto"
)

// Sealer keeps a secret that only this machine can read back.
type Sealer interface {
	Seal(secret []byte) ([]byte, error)
	Unseal(blob []byte) ([]byte, error)
}

// TPMSealer seals to the TPM's storage root key under the node's signed PCR
// policy (internal/tpmseal): PCR 7 as at sealing, the Secure Boot state
// and keys, and PCR 11 holding a value the platform's PCR policy key
// signed. The CA key then opens only on this TPM, under the cluster's
// Secure Boot keys, in a UKI the platform signed: the same policy as the
// node's state (kubedos-init), and it survives signed A/B upgrades.
type TPMSealer struct {
	// Open opens the TPM (/dev/tpmrm0 on a node; a simulator in tests).
	Open func() (io.ReadWriteCloser, error)
	// Policy gives the booted UKI's signed PCR policy.
	Policy func() (tpmseal.Policy, error)
}

// DeviceSealer seals with the TPM at path under the policy kubedos-init
// kept from the booted UKI (keyFile, sigFile).
func DeviceSealer(path, keyFile, sigFile string) TPMSealer {
	return TPMSealer{
		Open:   func() (io.ReadWriteCloser, error) { return tpm2.OpenTPM(path) },
		Policy: func() (tpmseal.Policy, error) { return tpmseal.ReadPolicy(keyFile, sigFile) },
	}
}

func (s TPMSealer) withTPM(fn func(io.ReadWriter) error) (err error) {
	if s.Open == nil {
		return errors.New("no TPM to seal with")
	}
	rw, err := s.Open()
	if err != nil {
		return fmt.Errorf("open TPM: %w", err)
	}
	defer func() { err = errors.Join(err, rw.Close()) }()
	return fn(rw)
}

func (s TPMSealer) policy() (tpmseal.Policy, error) {
	if s.Policy == nil {
		return tpmseal.Policy{}, tpmseal.ErrNoPolicy
	}
	p, err := s.Policy()
	if err != nil {
		return tpmseal.Policy{}, fmt.Errorf("the booted UKI's signed PCR policy: %w", err)
	}
	return p, nil
}

// envelope is a sealed secret: a TPM sealed object holds only up to 128
// bytes, so it holds a fresh AES-256 key and the secret is encrypted with
// it (AES-GCM).
type envelope struct {
	// Sealed is a tpmseal blob of the AES key, or, from a master that took
	// the hub before the signed PCR 11 policy, go-tpm-tools SealedBytes
	// under PCR 7 alone.
	Sealed     []byte `json:"sealed"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// Seal seals secret to the TPM under the booted UKI's signed policy. It
// refuses when this UKI's PCR 11 is not signed (it could not unseal).
func (s TPMSealer) Seal(secret []byte) ([]byte, error) {
	pol, err := s.policy()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	var env envelope
	err = s.withTPM(func(rw io.ReadWriter) error {
		var err error
		if env.Sealed, err = tpmseal.Seal(rw, key, pol.Key, pol.Signatures); err != nil {
			return fmt.Errorf("seal to the TPM: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	env.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(env.Nonce); err != nil {
		return nil, err
	}
	env.Ciphertext = aead.Seal(nil, env.Nonce, secret, nil)
	return json.Marshal(env)
}

// sealAttempts bounds unsealLegacy's retries.
const sealAttempts = 5

// unsealLegacy unseals a PCR-7-only blob, again when the TPM says a PCR
// moved between the policy session's PolicyPCR and the Unseal
// (TPM_RC_PCR_CHANGED): the TPM counts every extend, so a PCR 11 phase
// extend by systemd-pcrphase fails an unseal whose PCR 7 is right. A PCR 7
// that really differs fails with a policy error, not retried. (tpmseal
// retries its own races.)
func unsealLegacy(rw io.ReadWriter, sb *pb.SealedBytes) ([]byte, error) {
	srk, err := client.StorageRootKeyECC(rw)
	if err != nil {
		return nil, fmt.Errorf("TPM storage root key: %w", err)
	}
	defer srk.Close()
	for range sealAttempts {
		var key []byte
		key, err = srk.Unseal(sb, client.UnsealOpts{})
		if err == nil {
			return key, nil
		}
		var rc tpm2.Error
		if !errors.As(err, &rc) || rc.Code != tpm2.RCPCRChanged {
			return nil, err
		}
	}
	return nil, fmt.Errorf("PCRs kept changing during %d attempts: %w", sealAttempts, err)
}

// Unseal gives back what Seal sealed, if this is the same TPM, PCR 7 is as
// sealed and the booted UKI's PCR 11 is signed.
func (s TPMSealer) Unseal(blob []byte) ([]byte, error) {
	var env envelope
	if err := json.Unmarshal(blob, &env); err != nil {
		return nil, fmt.Errorf("sealed blob: %w", err)
	}
	var key []byte
	var err error
	if tpmseal.IsBlob(env.Sealed) {
		pol, perr := s.policy()
		if perr != nil {
			return nil, perr
		}
		err = s.withTPM(func(rw io.ReadWriter) error {
			var err error
			if key, err = tpmseal.Unseal(rw, env.Sealed, pol.Key, pol.Signatures); err != nil {
				return fmt.Errorf("unseal with the TPM (another TPM, PCR 7 changed, or this UKI not signed for it): %w", err)
			}
			return nil
		})
	} else {
		var sb pb.SealedBytes
		if err := proto.Unmarshal(env.Sealed, &sb); err != nil {
			return nil, fmt.Errorf("sealed blob: %w", err)
		}
		err = s.withTPM(func(rw io.ReadWriter) error {
			var err error
			if key, err = unsealLegacy(rw, &sb); err != nil {
				return fmt.Errorf("unseal with the TPM (another TPM, or PCR 7 changed?): %w", err)
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	out, err := aead.Open(nil, env.Nonce, env.Ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("sealed blob: %w", err)
	}
	return out, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("sealed key is %d bytes, want 32", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
