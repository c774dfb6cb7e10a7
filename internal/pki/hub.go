package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/kubedos/kubedos/internal/spec"
)

// HubServerName is the DNS name in the hub's TLS certificate; no node may
// have it (spec.ReservedNodeNames).
const HubServerName = spec.HubName

// OIDHubServer is the certificate policy that only the hub's TLS
// certificate carries (IssueServer). Node certificates are good for server
// auth too and name their node, so the name alone cannot tell the hub: a
// client of the hub checks for this policy (HubClientTLS). The OID is in
// the 2.25 arc (ITU-T X.667: an OID from a UUID, no registration), made
// for kubedos.
var OIDHubServer = mustOID("2.25.156885285666348970652810525465187099770")

func mustOID(s string) x509.OID {
	oid, err := x509.ParseOID(s)
	if err != nil {
		panic(err)
	}
	return oid
}

// HubClientTLS is the TLS configuration of every client of the hub (the
// CLI, kubedosd): TLS 1.3, roots as the only trust, the hub's name, and the
// hub's policy OID on the certificate it presents (VerifyHub). Add the
// client certificate, if any, to Certificates.
func HubClientTLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: HubServerName, MinVersion: tls.VersionTLS13, VerifyConnection: VerifyHub}
}

// VerifyHub is a tls.Config.VerifyConnection for clients of the hub: after
// the usual checks (the chain to the cluster CA, the name), the leaf must
// carry OIDHubServer and no kubedos role, so a node's certificate, whatever
// its name, is not the hub's. Errors wrap ErrNotHub.
func VerifyHub(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return fmt.Errorf("%w: the server's certificate was not verified against the cluster CA", ErrNotHub)
	}
	leaf := cs.VerifiedChains[0][0]
	if !slices.ContainsFunc(leaf.Policies, OIDHubServer.Equal) {
		return fmt.Errorf("%w: the certificate of %q (serial %s) names %s but lacks the hub's policy %s",
			ErrNotHub, leaf.Subject.CommonName, SerialString(leaf.SerialNumber), HubServerName, OIDHubServer)
	}
	if r, err := RoleOf(leaf); err == nil {
		return fmt.Errorf("%w: the certificate of %q carries the role %s", ErrNotHub, leaf.Subject.CommonName, r)
	}
	return nil
}
