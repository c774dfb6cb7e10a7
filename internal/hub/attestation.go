package hub

import (
	"crypto/x509"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/measure"
)

// AttestVerifier is the Verifier the hub runs with: internal/attest's checks.
// EKCAs are the TPM vendors' EK certificate CAs the spec trusts (swtpm's
// local CA locally); nil trusts none.
type AttestVerifier struct {
	EKCAs *x509.CertPool
}

func toAttestIdentity(id TPMIdentity) attest.Identity {
	return attest.Identity{EKPublic: id.EKPublic, EKCertificate: id.EKCertificate, AK: attest.AKParameters(id.AK)}
}

// CheckEKCertificate admits the EK only by its certificate (the hub applies
// registered hashes and windows itself).
func (v AttestVerifier) CheckEKCertificate(id TPMIdentity) error {
	if v.EKCAs == nil {
		return asCheckFailure(attest.CheckEK(toAttestIdentity(id), attest.EKPolicy{}))
	}
	return asCheckFailure(attest.CheckEK(toAttestIdentity(id), attest.EKPolicy{CAs: v.EKCAs}))
}

// NewChallenge makes the credential activation challenge.
func (v AttestVerifier) NewChallenge(id TPMIdentity) (Challenge, []byte, error) {
	c, secret, err := attest.NewChallenge(toAttestIdentity(id))
	if err != nil {
		return Challenge{}, nil, asCheckFailure(err)
	}
	return Challenge(c), secret, nil
}

// VerifyEvidence runs every evidence check against the prediction.
func (v AttestVerifier) VerifyEvidence(ev Evidence, akPublic, nonce []byte, pred measure.Prediction) error {
	_, err := attest.VerifyEvidence(attest.Evidence(ev), attest.VerifyInput{AKPublic: akPublic, Nonce: nonce, Prediction: pred})
	return asCheckFailure(err)
}

// asCheckFailure turns attest's refusals (the node failed a check) into the
// hub's CheckFailure; anything else stays the hub's own error.
func asCheckFailure(err error) error {
	if err == nil {
		return nil
	}
	if r, ok := attest.AsRefusal(err); ok {
		return &CheckFailure{Check: string(r.Check), Detail: r.Detail, Mismatches: r.Mismatches}
	}
	return err
}
