package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"
)

// A CSR asking for system:masters and another node's name gets the
// prometheus node's metrics identity and nothing else, for at most an hour.
func TestKubeSignMonitoring(t *testing.T) {
	cas := kubeCAs(t)
	key := mustP256(t)
	cert, err := cas.SignMonitoring(hostileCSR(t, key), "mon", 40*time.Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "prometheus@mon" || !slices.Equal(cert.Subject.Organization, []string{GroupMonitoring}) {
		t.Errorf("subject CN %q O %q, want prometheus@mon / system:monitoring", cert.Subject.CommonName, cert.Subject.Organization)
	}
	if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 0 || !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("SANs %v %v, EKU %v: want none and client auth only", cert.DNSNames, cert.IPAddresses, cert.ExtKeyUsage)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) || cert.NotAfter.Sub(t0) != 40*time.Minute {
		t.Errorf("key or life (%v) not as asked", cert.NotAfter.Sub(t0))
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: cas.Kubernetes.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify against the Kubernetes CA: %v", err)
	}
	for _, tc := range []struct {
		name string
		node string
		life time.Duration
		csr  []byte
		want error
	}{
		{"over an hour", "mon", 2 * time.Hour, hostileCSR(t, key), ErrInvalid},
		{"no life", "mon", 0, hostileCSR(t, key), ErrInvalid},
		{"junk CSR", "mon", time.Hour, []byte("junk"), ErrBadCSR},
		{"bad node name", "mon/../x", time.Hour, hostileCSR(t, key), ErrInvalid},
	} {
		if _, err := cas.SignMonitoring(tc.csr, tc.node, tc.life, t0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
