package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// Validity periods. Firmware ignores certificate validity (edk2 verifies
// with X509_V_FLAG_NO_CHECK_TIME), so the Secure Boot certificates are
// long-lived to keep verifiers such as sbverify happy for the platform's
// life. The cluster CA is rotated by hand within a decade; the admin
// certificate is an operator credential and expires within a year.
const (
	secureBootValidity = 30 * 365 * 24 * time.Hour
	caValidity         = 10 * 365 * 24 * time.Hour
	adminValidity      = 365 * 24 * time.Hour
	// backdate tolerates clocks behind the key ceremony's machine.
	backdate = time.Hour
)

// issued is a freshly made key and its certificate.
type issued struct {
	key  crypto.Signer
	cert *x509.Certificate
}

func serialNumber() (*big.Int, error) {
	// 127 random bits: positive, well inside the 20 octets RFC 5280 allows.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// newSecureBootCert makes one of PK, KEK, db: RSA 2048 (what OVMF and shim
// verify), self-signed. UEFI does not chain PK→KEK→db in X.509: authority
// between them is the signature on each variable update (.auth), so each
// certificate stands alone, as sbctl and most key-ceremony guides do. CA:TRUE
// with certSign lets OpenSSL-based verifiers (sbverify) treat the
// self-signed certificate as its own trust anchor.
func newSecureBootCert(cluster, role string, now time.Time) (issued, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return issued{}, fmt.Errorf("generate %s key: %w", role, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return issued{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("kubedos %s %s", cluster, role), Organization: []string{"kubedos"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(secureBootValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if role == "db" {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	}
	return selfSign(tmpl, key, role)
}

// newClusterCA makes the cluster CA: ECDSA P-256, CA:TRUE, path length 0
// (it issues only leaf certificates for nodes and operators).
func newClusterCA(cluster string, now time.Time) (issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issued{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return issued{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("kubedos %s CA", cluster), Organization: []string{"kubedos"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	return selfSign(tmpl, key, "CA")
}

// RoleOrgPrefix prefixes the role carried in a client certificate's
// Organization: "kubedos:admin", "kubedos:operator", "kubedos:reader".
const RoleOrgPrefix = "kubedos:"

// newClientCert makes an operator client certificate for role, issued by ca.
func newClientCert(ca issued, name, role string, now time.Time) (issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issued{}, fmt.Errorf("generate %s key: %w", name, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return issued{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{RoleOrgPrefix + role}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(adminValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return issued{}, fmt.Errorf("issue %s certificate: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return issued{}, fmt.Errorf("parse %s certificate: %w", name, err)
	}
	return issued{key: key, cert: cert}, nil
}

func selfSign(tmpl *x509.Certificate, key crypto.Signer, role string) (issued, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return issued{}, fmt.Errorf("self-sign %s certificate: %w", role, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return issued{}, fmt.Errorf("parse %s certificate: %w", role, err)
	}
	return issued{key: key, cert: cert}, nil
}
