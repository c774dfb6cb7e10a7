package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/spec"
)

// labelRE is a DNS label, the form the ClusterSpec requires of node names
// and roles.
var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckName reports whether s is acceptable as a node name or node role: a
// DNS label (lower-case letters, digits, '-'), as the ClusterSpec requires.
// The error quotes at most the first 64 bytes of s: it may come from an
// unauthenticated caller and end up in the audit log.
func CheckName(field, s string) error {
	if !labelRE.MatchString(s) {
		q := strconv.Quote(s)
		if len(s) > 64 {
			q = strconv.Quote(strings.ToValidUTF8(s[:64], "")) + fmt.Sprintf("…(%d bytes)", len(s))
		}
		return fmt.Errorf("%w: %s %s is not a DNS label (lower-case letters, digits, '-', at most 63)", ErrInvalid, field, q)
	}
	return nil
}

// SignNodeCSR certifies a node's key after the hub verified its attestation.
// csrDER is the PKCS#10 request the node made with a key it generated.
//
// The certificate's content comes from the arguments only: CN and the single
// SAN are DNS:name, O is "kubedos:node", OU is role, it is good for TLS client
// and server auth for lifetime from now (started a minute early, capped at the
// CA's expiry), with a random 128-bit serial. The CSR contributes its public
// key and nothing else; extensions it requests are ignored. A CSR that asks
// for another identity (a DNS name other than name, any IP, URI or e-mail
// SAN, a CN other than name, an O or OU other than the ones above) is refused
// with ErrCSRClaims, so a confused or hostile node is noticed rather than
// silently corrected.
func (ca *CA) SignNodeCSR(csrDER []byte, name, role string, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if err := CheckName("node name", name); err != nil {
		return nil, err
	}
	if err := CheckName("node role", role); err != nil {
		return nil, err
	}
	if slices.Contains(spec.ReservedNodeNames, name) {
		return nil, fmt.Errorf("%w: node name %q is reserved (%q): a node's certificate must not name the hub", ErrInvalid, name, spec.ReservedNodeNames)
	}
	csr, err := parseCSR(csrDER, "node "+name)
	if err != nil {
		return nil, err
	}
	if err := checkClaims(csr, name, role); err != nil {
		return nil, fmt.Errorf("%w: node %s: %w", ErrCSRClaims, name, err)
	}
	return ca.issue(nodeTemplate(name, role), csr.PublicKey, lifetime, now)
}

// nodeTemplate is a node certificate's content: never the hub's policy.
func nodeTemplate(name, role string) *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         name,
			Organization:       []string{OrgNode},
			OrganizationalUnit: []string{role},
		},
		DNSNames:              []string{name},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
}

// parseCSR is a CSR whose signature holds and whose key is of a type the
// cluster's certificates carry; what names it in errors. Callers use its
// key and nothing else they did not check themselves.
func parseCSR(der []byte, what string) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCSR, what, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %s: signature: %w", ErrBadCSR, what, err)
	}
	if err := CheckKeyType(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return csr, nil
}

// CheckKeyType accepts the public keys node certificates may carry: ECDSA
// on P-256 and ed25519. Errors wrap ErrKeyType.
func CheckKeyType(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA on %s, want P-256", ErrKeyType, k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("%w: %T, want ECDSA P-256 or ed25519", ErrKeyType, pub)
	}
}

// checkClaims refuses a CSR asking for anything but name's identity.
func checkClaims(csr *x509.CertificateRequest, name, role string) error {
	for _, d := range csr.DNSNames {
		if d != name {
			return fmt.Errorf("asks for DNS SAN %q, not the node name %q", d, name)
		}
	}
	if len(csr.IPAddresses) > 0 {
		return fmt.Errorf("asks for IP SANs %v: node certificates name the node only", csr.IPAddresses)
	}
	if len(csr.URIs) > 0 {
		return fmt.Errorf("asks for URI SANs %v: node certificates name the node only", csr.URIs)
	}
	if len(csr.EmailAddresses) > 0 {
		return fmt.Errorf("asks for e-mail SANs %v: node certificates name the node only", csr.EmailAddresses)
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != name {
		return fmt.Errorf("asks for CN %q, not the node name %q", cn, name)
	}
	if o := csr.Subject.Organization; len(o) > 0 && !slices.Equal(o, []string{OrgNode}) {
		return fmt.Errorf("asks for O %q: nodes get O %q", o, OrgNode)
	}
	if ou := csr.Subject.OrganizationalUnit; len(ou) > 0 && !slices.Equal(ou, []string{role}) {
		return fmt.Errorf("asks for OU %q, not the node role %q", ou, role)
	}
	return nil
}
