package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
)

// ErrInput classifies bad inputs from the hub itself (its policy, stored
// keys, issued nonce or secret): not a reason to quarantine a node.
var ErrInput = errors.New("invalid attestation input")

// NewChallenge checks that the identity's AK is a TPM-generated, restricted,
// non-duplicable signing key (go-attestation's CheckAKParameters plus the
// sign attribute and a sha256 signing scheme) and makes a credential
// activation challenge for it, encrypted to the identity's EK. The hub keeps
// the secret and compares the node's answer with VerifyActivation. A bad AK
// or EK is an ak-binding refusal.
func NewChallenge(id Identity) (Challenge, []byte, error) {
	ek, err := id.EK()
	if err != nil {
		return Challenge{}, nil, refuse(CheckAKBinding, err, "%v", err)
	}
	if err := checkAKPublic(id.AK.Public); err != nil {
		return Challenge{}, nil, refuse(CheckAKBinding, err, "AK is not a restricted sha256 signing key: %v", err)
	}
	ap := attest.ActivationParameters{EK: ek, AK: id.AK.attestation()}
	secret, ec, err := ap.Generate()
	if err != nil {
		return Challenge{}, nil, refuse(CheckAKBinding, err, "AK is not a TPM-generated restricted signing key: %v", err)
	}
	return Challenge{Credential: ec.Credential, Secret: ec.Secret}, secret, nil
}

// VerifyActivation compares, in constant time, the secret the node's TPM
// released with the one NewChallenge returned. A different or missing
// answer means the AK and the EK are not in the same TPM: ak-binding.
func VerifyActivation(secret, answer []byte) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no activation secret to compare", ErrInput)
	}
	if subtle.ConstantTimeCompare(secret, answer) != 1 {
		return refuse(CheckAKBinding, nil, "credential activation answer (%d bytes) is not the challenge secret: the AK is not in the TPM holding the EK", len(answer))
	}
	return nil
}

// EK parses the identity's EK public key (PKIX DER, RSA or ECDSA). The DER
// must be canonical, so that EKHash names one key one way.
func (id Identity) EK() (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(id.EKPublic)
	if err != nil {
		return nil, fmt.Errorf("EK public key: %v", err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("EK public key: %T is neither RSA nor ECDSA", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || string(der) != string(id.EKPublic) {
		return nil, fmt.Errorf("EK public key: not canonical PKIX DER")
	}
	return pub, nil
}

// checkAKPublic requires what go-attestation's CheckAKParameters leaves
// implicit: the key signs (and does not decrypt) with a sha256 scheme, the
// hash VerifyEvidence uses for quotes and PCR digests.
func checkAKPublic(public []byte) error {
	pub, err := tpm2.DecodePublic(public)
	if err != nil {
		return fmt.Errorf("TPMT_PUBLIC: %v", err)
	}
	const want = tpm2.FlagSign | tpm2.FlagRestricted | tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin
	if pub.Attributes&want != want || pub.Attributes&tpm2.FlagDecrypt != 0 {
		return fmt.Errorf("attributes %#x, want sign|restricted|fixedTPM|fixedParent|sensitiveDataOrigin without decrypt", uint32(pub.Attributes))
	}
	var scheme *tpm2.SigScheme
	switch {
	case pub.Type == tpm2.AlgRSA && pub.RSAParameters != nil:
		scheme = pub.RSAParameters.Sign
	case pub.Type == tpm2.AlgECC && pub.ECCParameters != nil:
		scheme = pub.ECCParameters.Sign
	default:
		return fmt.Errorf("key type %#x, want RSA or ECC", uint16(pub.Type))
	}
	if scheme == nil || scheme.Hash != tpm2.AlgSHA256 {
		return fmt.Errorf("signing scheme %+v, want one with sha256", scheme)
	}
	return nil
}
