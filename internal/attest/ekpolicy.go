package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-attestation/attest"
)

// EKPolicy says which endorsement keys may enroll: any one of the three
// ways admits an EK.
type EKPolicy struct {
	// Registered are EKHash values the deploy step recorded.
	Registered []string
	// CAs are the trust anchors for EK certificates (a TPM vendor's CA, or
	// swtpm's local CA: put its issuing CA here, as the identity carries no
	// intermediates; any certificate in the pool is an anchor). Nil: EK
	// certificates admit nothing.
	CAs *x509.CertPool
	// WindowOpen admits any EK: an enrollment window the operator opened for
	// a bounded time.
	WindowOpen bool
}

// EKAdmission says how an EK was admitted.
type EKAdmission string

// The ways an EK is admitted.
const (
	EKRegistered  EKAdmission = "registered"
	EKCertificate EKAdmission = "certificate"
	EKWindow      EKAdmission = "window"
)

// EKHash is the identity of a TPM as the EK policy names it: the lower-case
// hex sha256 of the EK public key's PKIX DER (Identity.EKPublic).
func EKHash(pkixDER []byte) string {
	s := sha256.Sum256(pkixDER)
	return hex.EncodeToString(s[:])
}

// CheckEK returns nil if policy admits the identity's EK, else an ek-policy
// refusal saying why each way failed.
func CheckEK(id Identity, policy EKPolicy) error {
	_, err := AdmitEK(id, policy)
	return err
}

// AdmitEK is CheckEK that also says how the EK was admitted (for the audit
// record): its hash is registered, else its certificate matches the EK and
// chains to one of policy.CAs, else the enrollment window is open.
func AdmitEK(id Identity, policy EKPolicy) (EKAdmission, error) {
	if _, err := id.EK(); err != nil {
		return "", refuse(CheckEKPolicy, err, "%v", err)
	}
	hash := EKHash(id.EKPublic)
	if slices.ContainsFunc(policy.Registered, func(r string) bool { return strings.EqualFold(strings.TrimSpace(r), hash) }) {
		return EKRegistered, nil
	}
	reasons := []string{fmt.Sprintf("EK %s is not registered (%d registered)", hash, len(policy.Registered))}
	certErr := checkEKCertificate(id, policy.CAs)
	if certErr == nil {
		return EKCertificate, nil
	}
	reasons = append(reasons, certErr.Error())
	if policy.WindowOpen {
		return EKWindow, nil
	}
	reasons = append(reasons, "the enrollment window is closed")
	return "", refuse(CheckEKPolicy, certErr, "%s", strings.Join(reasons, "; "))
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// checkEKCertificate verifies that the identity's EK certificate is for its
// EK and chains to cas.
func checkEKCertificate(id Identity, cas *x509.CertPool) error {
	if len(id.EKCertificate) == 0 {
		return fmt.Errorf("no EK certificate")
	}
	if cas == nil {
		return fmt.Errorf("no EK certificate CA configured")
	}
	// go-attestation unwraps the TCG NV header and tolerates trailing bytes.
	cert, err := attest.ParseEKCertificate(id.EKCertificate)
	if err != nil {
		return fmt.Errorf("EK certificate: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil || !bytes.Equal(der, id.EKPublic) {
		return fmt.Errorf("EK certificate (serial %s, issuer %q) is for another key (sha256 %s)", cert.SerialNumber, cert.Issuer, EKHash(der))
	}
	// The TCG EK credential profile makes the subject alternative name
	// critical when the subject is empty and fills it with the TPM's
	// manufacturer, model and version as a directoryName, which crypto/x509
	// does not parse and so leaves unhandled. Accept exactly that extension;
	// any other unhandled critical extension still fails verification.
	c := *cert
	c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions),
		func(o asn1.ObjectIdentifier) bool { return o.Equal(oidSubjectAltName) })
	// EK certificates carry the TCG EK key purpose (2.23.133.8.1), not a
	// TLS one.
	if _, err := c.Verify(x509.VerifyOptions{Roots: cas, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("EK certificate (serial %s, issuer %q) does not chain to a configured CA: %v", cert.SerialNumber, cert.Issuer, err)
	}
	return nil
}
