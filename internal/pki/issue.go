package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"
)

// Issued is a certificate with the private key made for it.
type Issued struct {
	Cert *x509.Certificate
	// CertPEM and KeyPEM (PKCS#8, the form `kubedos keys init` writes) are
	// ready to write to files; KeyPEM is secret.
	CertPEM, KeyPEM []byte
}

// TLSCertificate returns the pair for tls.Config.Certificates.
func (is *Issued) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(is.CertPEM, is.KeyPEM)
}

// IssueClient makes an operator client certificate: a fresh P-256 key, CN
// name, O "kubedos:<role>", client auth only. role is admin, operator or
// reader; node identities come only from SignNodeCSR after attestation.
func (ca *CA) IssueClient(name string, role Role, lifetime time.Duration, now time.Time) (*Issued, error) {
	if err := checkCN(name); err != nil {
		return nil, err
	}
	if role.level() == 0 {
		return nil, fmt.Errorf("%w: client role %q: want admin, operator or reader", ErrInvalid, role)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{role.Org()}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return ca.issueWithKey(tmpl, lifetime, now)
}

// IssueServer makes the hub's TLS server certificate: a fresh P-256 key, CN
// "kubedos hub", one SAN per host (an IP address or a DNS name), server auth
// only, and the hub's policy OIDHubServer that its clients require.
func (ca *CA) IssueServer(hosts []string, lifetime time.Duration, now time.Time) (*Issued, error) {
	return ca.issueServer("kubedos hub", []x509.OID{OIDHubServer}, hosts, lifetime, now)
}

// IssueMetricsServer makes the certificate of the hub's /metrics endpoint:
// IssueServer's without OIDHubServer. Go before 1.22 cannot parse a policy
// OID with arcs beyond 31 bits and refuses the whole certificate, and
// Debian bookworm's Prometheus is built with Go 1.19; lacking the policy,
// the certificate is refused by every client of the hub's API, so it can
// serve metrics and nothing else.
func (ca *CA) IssueMetricsServer(hosts []string, lifetime time.Duration, now time.Time) (*Issued, error) {
	return ca.issueServer("kubedos hub metrics", nil, hosts, lifetime, now)
}

// IssueConsoleServer makes the certificate of the web console the hub
// serves on the master (port 8443): IssueServer's without OIDHubServer, so
// it can serve the console and never pass for the hub's API. A browser that
// trusts the cluster CA (ca.crt imported) then trusts the console.
func (ca *CA) IssueConsoleServer(hosts []string, lifetime time.Duration, now time.Time) (*Issued, error) {
	return ca.issueServer("kubedos console", nil, hosts, lifetime, now)
}

func (ca *CA) issueServer(cn string, policies []x509.OID, hosts []string, lifetime time.Duration, now time.Time) (*Issued, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: the hub certificate needs at least one host", ErrInvalid)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"kubedos"}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		Policies:              policies,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if !validHostname(h) {
			return nil, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrInvalid, h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	return ca.issueWithKey(tmpl, lifetime, now)
}

func (ca *CA) issueWithKey(tmpl *x509.Certificate, lifetime time.Duration, now time.Time) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := ca.issue(tmpl, key.Public(), lifetime, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key for %q: %w", tmpl.Subject.CommonName, err)
	}
	return &Issued{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}, nil
}

// checkCN accepts a printable operator name of at most 64 bytes (the
// X.520 upper bound for a CN).
func checkCN(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w: client name %q must be 1 to 64 bytes", ErrInvalid, name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: client name %q has a non-printable character %U", ErrInvalid, name, r)
		}
	}
	if strings.HasPrefix(name, "node:") {
		return fmt.Errorf("%w: client name %q: the prefix node: is reserved for node actors in the audit log", ErrInvalid, name)
	}
	return nil
}

// validHostname accepts dot-separated DNS labels (letters, digits, '-'),
// 253 bytes at most.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if !labelRE.MatchString(strings.ToLower(l)) {
			return false
		}
	}
	return true
}
