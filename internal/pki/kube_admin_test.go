package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKubeAdminUser(t *testing.T) {
	long := strings.Repeat("é", 32) // 64 bytes, every one escaped
	for _, tc := range []struct{ operator, want string }{
		{"alice", "kubedos-admin:alice"},
		{"alice@example.org", "kubedos-admin:alice@example.org"},
		{"Bob Smith", "kubedos-admin:Bob%20Smith"},
		{"system:masters", "kubedos-admin:system%3Amasters"},
		{"a,b/c%", "kubedos-admin:a%2Cb%2Fc%25"},
	} {
		if got := KubeAdminUser(tc.operator); got != tc.want {
			t.Errorf("KubeAdminUser(%q) = %q, want %q", tc.operator, got, tc.want)
		}
	}
	u := KubeAdminUser(long)
	if len(u) > 64 || !strings.HasPrefix(u, KubeAdminPrefix) {
		t.Errorf("long name: %q (%d bytes), want at most 64 with the prefix", u, len(u))
	}
	// No escape cut in half: every % is followed by two hex digits.
	rest := strings.TrimPrefix(u, KubeAdminPrefix)
	for i := 0; i < len(rest); i++ {
		if rest[i] == '%' && (i+2 >= len(rest) || !strings.ContainsRune("0123456789ABCDEF", rune(rest[i+1])) || !strings.ContainsRune("0123456789ABCDEF", rune(rest[i+2]))) {
			t.Errorf("long name: escape cut at %d in %q", i, u)
		}
	}
	// Two long names sharing their first bytes stay distinct.
	if KubeAdminUser(long+"a") == KubeAdminUser(long+"b") {
		t.Error("two long operator names map to one Kubernetes user")
	}
}

func TestKubeSignAdmin(t *testing.T) {
	cas := kubeCAs(t)
	key := mustP256(t)
	// The CSR asks for system:node:cp-1 in system:masters with SANs: only
	// its key is used.
	cert, err := cas.SignAdmin(hostileCSR(t, key), "alice", 30*time.Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "kubedos-admin:alice" || !slices.Equal(cert.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("subject CN %q O %q, want kubedos-admin:alice / system:masters", cert.Subject.CommonName, cert.Subject.Organization)
	}
	if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 0 {
		t.Errorf("SANs %v %v copied from the CSR", cert.DNSNames, cert.IPAddresses)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v, want client auth only", cert.ExtKeyUsage)
	}
	if got := cert.NotAfter.Sub(t0); got != 30*time.Minute {
		t.Errorf("life %v, want 30m", got)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("not for the CSR's key")
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: cas.Kubernetes.Pool(), CurrentTime: t0, KeyUsages: usage}); err != nil {
		t.Errorf("verify against the Kubernetes CA: %v", err)
	}
	for _, other := range []*CA{cas.Etcd, cas.FrontProxy} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), CurrentTime: t0, KeyUsages: usage}); err == nil {
			t.Errorf("verifies against %q", other.Certificate().Subject.CommonName)
		}
	}

	csr := hostileCSR(t, key)
	for _, tc := range []struct {
		name     string
		csr      []byte
		operator string
		life     time.Duration
		want     error
	}{
		{"life over an hour", csr, "alice", time.Hour + time.Second, ErrInvalid},
		{"zero life", csr, "alice", 0, ErrInvalid},
		{"empty operator", csr, "", time.Hour, ErrInvalid},
		{"node actor name", csr, "node:w-1", time.Hour, ErrInvalid},
		{"garbage CSR", []byte("x"), "alice", time.Hour, ErrBadCSR},
	} {
		if _, err := cas.SignAdmin(tc.csr, tc.operator, tc.life, t0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
