package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/sign"
)

// The key ceremony makes three RSA keys; tests share one run of it.
var (
	ceremonyOnce sync.Once
	ceremonyDir  string
	ceremonyKS   *sign.KeySet
	ceremonyErr  error
)

func ceremony(t *testing.T) (string, *sign.KeySet) {
	t.Helper()
	ceremonyOnce.Do(func() {
		root, err := os.MkdirTemp("", "kubedos-pki-test-")
		if err != nil {
			ceremonyErr = err
			return
		}
		ceremonyDir = filepath.Join(root, "keys")
		ceremonyKS, ceremonyErr = sign.InitKeys(context.Background(), ceremonyDir, sign.InitOptions{Cluster: "test", Now: t0})
	})
	if ceremonyErr != nil {
		t.Fatalf("key ceremony: %v", ceremonyErr)
	}
	return ceremonyDir, ceremonyKS
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ceremonyDir != "" {
		os.RemoveAll(filepath.Dir(ceremonyDir))
	}
	os.Exit(code)
}

// The constants repeated from internal/sign (which pki may not import) must
// stay equal to the key ceremony's.
func TestAgreesWithKeyCeremony(t *testing.T) {
	if CAKeyFile != sign.FileCAKey || CACertFile != sign.FileCACert {
		t.Errorf("CA files %s, %s; key ceremony writes %s, %s", CAKeyFile, CACertFile, sign.FileCAKey, sign.FileCACert)
	}
	if RoleOrgPrefix != sign.RoleOrgPrefix {
		t.Errorf("RoleOrgPrefix %q, key ceremony %q", RoleOrgPrefix, sign.RoleOrgPrefix)
	}
}

func TestLoadCAFromKeyCeremony(t *testing.T) {
	dir, ks := ceremony(t)
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !ca.Certificate().Equal(ks.CA) {
		t.Errorf("loaded CA %q, key ceremony made %q", ca.Certificate().Subject, ks.CA.Subject)
	}
	blk, _ := pem.Decode(ca.CertPEM())
	if blk == nil || !bytes.Equal(blk.Bytes, ks.CA.Raw) {
		t.Errorf("CertPEM does not hold the CA certificate")
	}
	// The ceremony's admin certificate is a valid admin identity here.
	p, err := ca.Authenticate(ks.Admin, t0.Add(time.Hour), nil)
	if err != nil {
		t.Fatalf("Authenticate(admin): %v", err)
	}
	if p.Name != "admin" || p.Role != RoleAdmin || p.Actor() != "admin (admin)" {
		t.Errorf("admin peer = %+v", p)
	}
	// And what LoadCA signs chains in a stock x509 verification.
	node, err := ca.SignNodeCSR(csrDER(t, mustP256(t), &x509.CertificateRequest{}), "w-1", "worker", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, DNSName: "w-1",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("x509 Verify node certificate: %v", err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	src, _ := ceremony(t)
	other := newTestCA(t, "other")
	otherKey, err := x509.MarshalPKCS8PrivateKey(other.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := other.IssueClient("alice", RoleReader, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(dir string)
		file   string // the file the error must name
	}{
		{"no key (public-only copy)", func(dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) }, CAKeyFile},
		{"no certificate", func(dir string) { os.Remove(filepath.Join(dir, CACertFile)) }, CACertFile},
		{"key of another CA", func(dir string) {
			write(t, filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKey}))
		}, CAKeyFile},
		{"leaf certificate as CA", func(dir string) {
			write(t, filepath.Join(dir, CACertFile), leaf.CertPEM)
			write(t, filepath.Join(dir, CAKeyFile), leaf.KeyPEM)
		}, CAKeyFile},
		{"not PEM", func(dir string) { write(t, filepath.Join(dir, CACertFile), []byte("hello")) }, CACertFile},
		{"wrong PEM type", func(dir string) { write(t, filepath.Join(dir, CACertFile), leaf.KeyPEM) }, CACertFile},
		{"data after the PEM block", func(dir string) {
			raw, _ := os.ReadFile(filepath.Join(src, CACertFile))
			write(t, filepath.Join(dir, CACertFile), append(raw, "junk"...))
		}, CACertFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{CAKeyFile, CACertFile} {
				raw, err := os.ReadFile(filepath.Join(src, f))
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, f), raw)
			}
			tt.change(dir)
			_, err := LoadCA(dir)
			if !errors.Is(err, ErrBadCA) {
				t.Fatalf("LoadCA = %v, want ErrBadCA", err)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.file)) {
				t.Errorf("error %q does not name %s", err, tt.file)
			}
		})
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSerials(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		n, err := NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 128 {
			t.Fatalf("serial %s: want positive, at most 128 bits", n)
		}
		s := SerialString(n)
		if seen[s] {
			t.Fatalf("serial %s repeated", s)
		}
		seen[s] = true
		back, err := ParseSerial(s)
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("ParseSerial(%q) = %v, %v", s, back, err)
		}
	}
	for _, bad := range []string{"", "0", "00ff", "FF", "-1", "xyz", "0x1f"} {
		if _, err := ParseSerial(bad); !errors.Is(err, ErrInvalid) || !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseSerial(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
