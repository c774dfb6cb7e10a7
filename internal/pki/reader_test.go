package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// A prometheus node's reader certificate reads and nothing more: whatever
// its CSR asks for, it is a client certificate of role reader named after
// the node, and every refusal is a CSR a hostile node could send.
func TestSignReaderCSR(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	key := mustP256(t)
	now := time.Now()
	// A CSR asking to be an admin, a server, an IP: only its key is used.
	greedy := csrDER(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "root", Organization: []string{RoleAdmin.Org()}},
		DNSNames: []string{"kubedos-hub"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}})
	c, err := ca.SignReaderCSR(greedy, "mon", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if role, err := RoleOf(c); err != nil || role != RoleReader {
		t.Errorf("role %q (%v), want reader", role, err)
	}
	if c.Subject.CommonName != "prometheus@mon" || len(c.DNSNames) > 0 || len(c.IPAddresses) > 0 {
		t.Errorf("subject %q, SANs %v %v: want prometheus@mon and none", c.Subject.CommonName, c.DNSNames, c.IPAddresses)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || c.IsCA {
		t.Errorf("usage %v, CA %v: want client auth only", c.ExtKeyUsage, c.IsCA)
	}
	if !c.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("the certificate does not carry the CSR's key")
	}
	if p, err := AuthenticateAgainst(ca.Certificate(), c, now, nil); err != nil || p.Role != RoleReader || Allows(p.Role, ActionRevoke) {
		t.Errorf("authenticated as %+v (%v): want a reader that may not revoke", p, err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tampered := csrDER(t, key, &x509.CertificateRequest{})
	tampered[len(tampered)-5] ^= 0xff
	for name, tc := range map[string]struct {
		der  []byte
		node string
		want error
	}{
		"garbage":           {[]byte("not a CSR"), "mon", ErrBadCSR},
		"bad signature":     {tampered, "mon", ErrBadCSR},
		"P-384 key":         {csrDER(t, p384, &x509.CertificateRequest{}), "mon", ErrKeyType},
		"node name not DNS": {csrDER(t, key, &x509.CertificateRequest{}), "Mon Node", ErrInvalid},
	} {
		if _, err := ca.SignReaderCSR(tc.der, tc.node, time.Hour, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
