package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"
)

func TestSignNodeCSR(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	p256 := mustP256(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// A CSR asking for CA:TRUE in its extension request: never copied.
	bc, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		t.Fatal(err)
	}
	caRequest := &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}}
	tampered := csrDER(t, p256, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "w-1"}})
	tampered[len(tampered)-5] ^= 0xff // inside the signature

	tests := []struct {
		name     string
		key      crypto.Signer
		req      *x509.CertificateRequest
		der      []byte // overrides key+req
		node     string
		role     string
		lifetime time.Duration
		want     error
	}{
		{name: "P-256, empty request", key: p256, req: &x509.CertificateRequest{}},
		{name: "ed25519", key: edKey, req: &x509.CertificateRequest{}},
		{name: "CN and SAN equal the name", key: p256, req: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "w-1"}, DNSNames: []string{"w-1"}}},
		{name: "O and OU the node would get", key: p256, req: &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"kubedos:node"}, OrganizationalUnit: []string{"worker"}}}},
		{name: "requested extensions are ignored", key: p256, req: caRequest},
		{name: "extra DNS SAN", key: p256, req: &x509.CertificateRequest{DNSNames: []string{"w-1", "hub"}}, want: ErrCSRClaims},
		{name: "other DNS SAN", key: p256, req: &x509.CertificateRequest{DNSNames: []string{"w-2"}}, want: ErrCSRClaims},
		{name: "IP SAN", key: p256, req: &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 77, 0, 1)}}, want: ErrCSRClaims},
		{name: "URI SAN", key: p256, req: &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "spiffe", Host: "kubedos", Path: "/hub"}}}, want: ErrCSRClaims},
		{name: "e-mail SAN", key: p256, req: &x509.CertificateRequest{EmailAddresses: []string{"root@w-1"}}, want: ErrCSRClaims},
		{name: "CN of another node", key: p256, req: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "master"}}, want: ErrCSRClaims},
		{name: "admin role in O", key: p256, req: &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"kubedos:admin"}}}, want: ErrCSRClaims},
		{name: "other role in OU", key: p256, req: &x509.CertificateRequest{Subject: pkix.Name{OrganizationalUnit: []string{"master"}}}, want: ErrCSRClaims},
		{name: "RSA key", key: rsaKey, req: &x509.CertificateRequest{}, want: ErrKeyType},
		{name: "P-384 key", key: p384, req: &x509.CertificateRequest{}, want: ErrKeyType},
		{name: "bad signature", der: tampered, want: ErrBadCSR},
		{name: "not DER", der: []byte("-----BEGIN CERTIFICATE REQUEST-----"), want: ErrBadCSR},
		{name: "empty", der: []byte{}, want: ErrBadCSR},
		{name: "name not a DNS label", key: p256, req: &x509.CertificateRequest{}, node: "W_1", want: ErrInvalid},
		{name: "empty role", key: p256, req: &x509.CertificateRequest{}, role: "-", want: ErrInvalid},
		{name: "zero lifetime", key: p256, req: &x509.CertificateRequest{}, lifetime: -1, want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := tt.der
			if der == nil {
				der = csrDER(t, tt.key, tt.req)
			}
			node, role, lifetime := "w-1", "worker", 6*time.Hour
			if tt.node != "" {
				node = tt.node
			}
			if tt.role != "" {
				role = tt.role
			}
			if tt.lifetime != 0 {
				lifetime = 0
			}
			cert, err := ca.SignNodeCSR(der, node, role, lifetime, t0)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("SignNodeCSR = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("SignNodeCSR: %v", err)
			}
			checkNodeCert(t, ca, cert, tt.key.Public(), "w-1", "worker", 6*time.Hour)
		})
	}
}

func checkNodeCert(t *testing.T, ca *CA, cert *x509.Certificate, pub crypto.PublicKey, name, role string, lifetime time.Duration) {
	t.Helper()
	if err := cert.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
		t.Errorf("certificate key is not the CSR's")
	}
	if got := cert.Subject.CommonName; got != name {
		t.Errorf("CN = %q, want %q", got, name)
	}
	if got := cert.Subject.Organization; !slices.Equal(got, []string{"kubedos:node"}) {
		t.Errorf("O = %q, want [kubedos:node]", got)
	}
	if got := cert.Subject.OrganizationalUnit; !slices.Equal(got, []string{role}) {
		t.Errorf("OU = %q, want [%s]", got, role)
	}
	if !slices.Equal(cert.DNSNames, []string{name}) || len(cert.IPAddresses)+len(cert.URIs)+len(cert.EmailAddresses) != 0 {
		t.Errorf("SANs = DNS %q IP %v URI %v email %q, want DNS [%s] only", cert.DNSNames, cert.IPAddresses, cert.URIs, cert.EmailAddresses, name)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want client+server auth", cert.ExtKeyUsage)
	}
	if cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("IsCA = %v (BasicConstraintsValid %v), want a leaf", cert.IsCA, cert.BasicConstraintsValid)
	}
	if !cert.NotBefore.Equal(t0.Add(-time.Minute)) || !cert.NotAfter.Equal(t0.Add(lifetime)) {
		t.Errorf("validity %s .. %s, want %s .. %s", cert.NotBefore, cert.NotAfter, t0.Add(-time.Minute), t0.Add(lifetime))
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %s: want positive, at most 128 bits", cert.SerialNumber)
	}
	r, err := RoleOf(cert)
	if err != nil || r != RoleNode {
		t.Errorf("RoleOf = %q, %v; want node", r, err)
	}
}

func TestSignNodeCSRCapsAtCAExpiry(t *testing.T) {
	ca := newTestCA(t, "ca")
	der := csrDER(t, mustP256(t), &x509.CertificateRequest{})
	late := ca.Certificate().NotAfter.Add(-time.Hour)
	cert, err := ca.SignNodeCSR(der, "w-1", "worker", 24*time.Hour, late)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", cert.NotAfter, ca.Certificate().NotAfter)
	}
	if _, err := ca.SignNodeCSR(der, "w-1", "worker", time.Hour, ca.Certificate().NotAfter.Add(time.Second)); !errors.Is(err, ErrBadCA) {
		t.Errorf("signing after the CA expired = %v, want ErrBadCA", err)
	}
}
