// Package pkitest makes throwaway cluster CAs and operator key directories
// for tests: one place, so every test's CA is made the same way.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// NewCA makes a P-256 cluster CA valid for an hour around now.
func NewCA(t testing.TB) *pki.CA {
	t.Helper()
	return NewCAWith(t, "test CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// NewCAWith makes a P-256 cluster CA like the key ceremony's (CA:TRUE, no
// intermediates) named cn and valid from notBefore to notAfter: tests on a
// fake clock need a CA valid at its times.
func NewCAWith(t testing.TB, cn string, notBefore, notAfter time.Time) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// WriteKeys writes a key directory as the CLI reads it: ca's certificate
// and a client certificate and key of role (the admin's file names), and
// returns the directory.
func WriteKeys(t testing.TB, ca *pki.CA, role pki.Role) string {
	t.Helper()
	dir := t.TempDir()
	client, err := ca.IssueClient(string(role), role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for f, data := range map[string][]byte{sign.FileCACert: ca.CertPEM(), sign.FileAdminCert: client.CertPEM, sign.FileAdminKey: client.KeyPEM} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
