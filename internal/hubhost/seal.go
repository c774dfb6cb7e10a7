package hubhost

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm-tools/client"
	pb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"
)

// Sealer keeps a secret that only this machine can read back.
type Sealer interface {
	Seal(secret []byte) ([]byte, error)
	Unseal(blob []byte) ([]byte, error)
}

// SealPCRs are what the CA key is sealed to: PCR 7, the Secure Boot
// policy. It stays the same across A/B upgrades (every UKI is signed by the
// same db key) and changes when Secure Boot is off or its keys change, so
// a master booted outside the cluster's trust chain cannot sign.
var SealPCRs = []int{7}

// TPMSealer seals to the TPM's storage root key and the current values of
// PCRs: the blob is useless on another TPM or with other PCR values.
type TPMSealer struct {
	// Open opens the TPM (/dev/tpmrm0 on a node; a simulator in tests).
	Open func() (io.ReadWriteCloser, error)
	PCRs []int
}

// DeviceSealer seals with the TPM at path, to SealPCRs.
func DeviceSealer(path string) TPMSealer {
	return TPMSealer{Open: func() (io.ReadWriteCloser, error) { return tpm2.OpenTPM(path) }, PCRs: SealPCRs}
}

func (s TPMSealer) withSRK(fn func(*client.Key) error) (err error) {
	if s.Open == nil {
		return errors.New("no TPM to seal with")
	}
	rw, err := s.Open()
	if err != nil {
		return fmt.Errorf("open TPM: %w", err)
	}
	defer func() { err = errors.Join(err, rw.Close()) }()
	srk, err := client.StorageRootKeyECC(rw)
	if err != nil {
		return fmt.Errorf("TPM storage root key: %w", err)
	}
	defer srk.Close()
	return fn(srk)
}

// envelope is a sealed secret: a TPM sealed object holds only up to 128
// bytes, so it holds a fresh AES-256 key and the secret is encrypted with
// it (AES-GCM).
type envelope struct {
	Sealed     []byte `json:"sealed"` // pb.SealedBytes of the AES key
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// Seal seals secret to the TPM and the current PCR values.
func (s TPMSealer) Seal(secret []byte) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	var env envelope
	err := s.withSRK(func(srk *client.Key) error {
		sb, err := sealRetrying(srk, key, s.PCRs)
		if err != nil {
			return fmt.Errorf("seal to the TPM: %w", err)
		}
		env.Sealed, err = proto.Marshal(sb)
		return err
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

// pcrsModifiedText is how go-tpm-tools (client/keys.go, v0.4.7) says a PCR
// moved while it sealed: a bare fmt.Errorf, no sentinel to compare, so this
// is the one place we match a library's error text. TestSealRaceText pins
// it against the library we build with.
const pcrsModifiedText = "PCRs have been modified after sealing"

// sealAttempts bounds sealRetrying. Each attempt is a few TPM commands;
// PCRs change a handful of times per boot, so two attempts nearly always do.
const sealAttempts = 5

// sealRetrying seals key to pcrs, again when another PCR moved meanwhile.
// go-tpm-tools certifies every PCR at creation and then reads them all back,
// refusing the result if any changed in between. On a node booting up,
// systemd-pcrphase extends PCR 11 (and others may be extended) at any moment,
// so the first attempt can lose that race even though the PCRs sealed to
// (7) never change. A sealed object that was refused was never loaded: there
// is nothing to clean up.
func sealRetrying(srk *client.Key, key []byte, pcrs []int) (*pb.SealedBytes, error) {
	var err error
	for range sealAttempts {
		var sb *pb.SealedBytes
		sb, err = srk.Seal(key, client.SealOpts{Current: tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: pcrs}})
		if err == nil {
			return sb, nil
		}
		if !strings.Contains(err.Error(), pcrsModifiedText) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("PCRs kept changing during %d attempts: %w", sealAttempts, err)
}

// unsealRetrying unseals sb, again when the TPM says a PCR moved between the
// policy session's PolicyPCR and the Unseal (TPM_RC_PCR_CHANGED). The TPM
// counts every extend, not just those of the PCRs sealed to, so a PCR 11
// phase extend by systemd-pcrphase while a master takes the hub over fails
// an unseal whose PCR 7 is right. A PCR 7 that really differs fails with a
// policy error instead, which is not retried.
func unsealRetrying(srk *client.Key, sb *pb.SealedBytes) ([]byte, error) {
	var err error
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

// Unseal gives back what Seal sealed, if this is the same TPM and the PCRs
// hold the same values.
func (s TPMSealer) Unseal(blob []byte) ([]byte, error) {
	var env envelope
	if err := json.Unmarshal(blob, &env); err != nil {
		return nil, fmt.Errorf("sealed blob: %w", err)
	}
	var sb pb.SealedBytes
	if err := proto.Unmarshal(env.Sealed, &sb); err != nil {
		return nil, fmt.Errorf("sealed blob: %w", err)
	}
	var key []byte
	err := s.withSRK(func(srk *client.Key) error {
		var err error
		if key, err = unsealRetrying(srk, &sb); err != nil {
			return fmt.Errorf("unseal with the TPM (another TPM, or PCR %v changed?): %w", s.PCRs, err)
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
