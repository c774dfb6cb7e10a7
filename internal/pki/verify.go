package pki

import (
	"crypto/x509"
	"fmt"
	"time"
)

// Peer is who a verified certificate speaks for.
type Peer struct {
	// Name is the certificate's CN: the operator's name or the node name.
	Name string
	Role Role
	// NodeRole is the node's role (OU) for RoleNode, empty otherwise.
	NodeRole string
	// Serial is the certificate serial (SerialString form).
	Serial string
}

// Actor is how the audit log names the peer: "node:<name>" for a node,
// "<name> (<role>)" for an operator.
func (p Peer) Actor() string {
	if p.Role == RoleNode {
		return "node:" + p.Name
	}
	return fmt.Sprintf("%s (%s)", p.Name, p.Role)
}

// Authenticate decides whether cert, presented by a TLS peer, is a valid
// identity at now: issued by this CA, within its validity period, not in
// revoked (nil means none revoked), and carrying exactly one known role.
// Errors wrap ErrUntrusted, ErrExpired, ErrNotYetValid, ErrRevoked or
// ErrNoRole. Use it in tls.Config.VerifyConnection on both the hub and
// node APIs so a revocation takes effect at the next handshake or call.
func (ca *CA) Authenticate(cert *x509.Certificate, now time.Time, revoked *Revocations) (Peer, error) {
	return AuthenticateAgainst(ca.cert, cert, now, revoked)
}

// AuthenticateAgainst is Authenticate for a holder of the CA certificate
// alone: a node checks the callers of its API with the cluster CA baked into
// its image and the revocation list it fetches from the hub.
func AuthenticateAgainst(caCert, cert *x509.Certificate, now time.Time, revoked *Revocations) (Peer, error) {
	if caCert == nil {
		return Peer{}, fmt.Errorf("%w: no CA certificate to check against", ErrBadCA)
	}
	if cert == nil {
		return Peer{}, fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	name := cert.Subject.CommonName
	if err := cert.CheckSignatureFrom(caCert); err != nil {
		return Peer{}, fmt.Errorf("%w: %q (issuer %q): %w", ErrUntrusted, name, cert.Issuer.CommonName, err)
	}
	if cert.IsCA {
		return Peer{}, fmt.Errorf("%w: %q is a CA certificate, not an identity", ErrUntrusted, name)
	}
	if now.Before(cert.NotBefore) {
		return Peer{}, fmt.Errorf("%w: %q valid from %s, now %s", ErrNotYetValid, name,
			cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return Peer{}, fmt.Errorf("%w: %q expired at %s, now %s", ErrExpired, name,
			cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if revoked != nil {
		if err := revoked.Check(cert); err != nil {
			return Peer{}, err
		}
	}
	role, err := RoleOf(cert)
	if err != nil {
		return Peer{}, err
	}
	p := Peer{Name: name, Role: role, Serial: SerialString(cert.SerialNumber)}
	if role == RoleNode {
		if len(cert.Subject.OrganizationalUnit) != 1 || len(cert.DNSNames) != 1 || cert.DNSNames[0] != name {
			return Peer{}, fmt.Errorf("%w: node certificate %q lacks its single role OU or SAN", ErrNoRole, name)
		}
		p.NodeRole = cert.Subject.OrganizationalUnit[0]
	}
	return p, nil
}
