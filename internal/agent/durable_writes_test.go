package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	mathbig "math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

// TestTornRenewalKeepsUsableIdentity: a power cut after a renewal wrote
// the new key but before it wrote the certificate leaves the new key beside
// the old certificate; the node still loads a matching pair (the old key,
// kept as node.key.prev) and so still has an identity at the next boot.
func TestTornRenewalKeepsUsableIdentity(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	dir := t.TempDir()
	old := writeNodeIdentity(t, ca, dir, "w-1")
	keyFile, certFile := filepath.Join(dir, NodeKeyFile), filepath.Join(dir, NodeCertFile)

	// What saveIdentity has done when the cut comes: the old key copied
	// aside, the new key in place, the certificate not yet written.
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile+PrevKeySuffix, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	newDir := t.TempDir()
	writeNodeIdentity(t, ca, newDir, "w-1")
	newKey, _ := os.ReadFile(filepath.Join(newDir, NodeKeyFile))
	if err := os.WriteFile(keyFile, newKey, 0o600); err != nil {
		t.Fatal(err)
	}

	pair, err := EnrollConfig{StateDir: dir}.identity()
	if err != nil {
		t.Fatalf("identity after a torn renewal: %v", err)
	}
	if leaf, _ := x509.ParseCertificate(pair.Certificate[0]); leaf == nil || leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Errorf("loaded certificate %v, want the old one (serial %x)", leaf, old.SerialNumber)
	}
	if _, err := (&certReloader{certFile: certFile, keyFile: keyFile}).get(nil); err != nil {
		t.Errorf("node API certificate after a torn renewal: %v", err)
	}

	// A renewal that completes removes the old key.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "w-1"}}, key)
	cert, err := ca.SignNodeCSR(csr, "w-1", "worker", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saveIdentity(dir, key, cert.Raw, cert); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keyFile + PrevKeySuffix); !os.IsNotExist(err) {
		t.Errorf("old key left after a whole renewal: %v", err)
	}
	if _, err := (EnrollConfig{StateDir: dir}).identity(); err != nil {
		t.Errorf("identity after a whole renewal: %v", err)
	}
}

// smallFS mounts a 64 KiB tmpfs (root only; skipped otherwise), the real
// thing for a write that fails half way.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

// fill takes all the space left in dir.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// TestFailedWritesKeepOldFiles: with the state partition full, storing a
// node configuration, a revocation list or a renewed identity fails and
// leaves the files as they were (never a torn or empty file).
func TestFailedWritesKeepOldFiles(t *testing.T) {
	dir := smallFS(t)
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.StateDir = dir })
	op := e.as("olga", pki.RoleOperator)
	ctx := context.Background()
	if _, err := op.ConfigApply(ctx, `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":"w-1"}`, false); err != nil {
		t.Fatal(err)
	}
	ca := e.ca
	idDir := filepath.Join(dir, "identity")
	writeNodeIdentity(t, ca, idDir, "w-1")
	revFile := filepath.Join(dir, RevokedFile)
	revs, err := LoadRevocationList(revFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := revs.Update([]string{"1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, f := range []string{revFile, filepath.Join(dir, ConfigFile), filepath.Join(idDir, NodeKeyFile), filepath.Join(idDir, NodeCertFile)} {
		if before[f], err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, dir)

	big := make([]string, 2000)
	for i := range big {
		big[i] = pki.SerialString(new(mathbig.Int).SetInt64(int64(i + 2)))
	}
	if err := revs.Update(big, time.Now()); err == nil {
		t.Error("revocation list stored on a full disk")
	}
	long := `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":"w-2","sysctls":{"net.ipv4.ip_forward":"` + string(bytes.Repeat([]byte("1"), 4000)) + `"}}`
	if _, err := op.ConfigApply(ctx, long, false); err == nil {
		t.Error("configuration stored on a full disk")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "w-1"}}, key)
	cert, err := ca.SignNodeCSR(csr, "w-1", "worker", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saveIdentity(idDir, key, cert.Raw, cert); err == nil {
		t.Error("identity stored on a full disk")
	}
	for f, want := range before {
		if got, _ := os.ReadFile(f); !bytes.Equal(got, want) {
			t.Errorf("%s changed by a failed write (%d bytes, was %d)", f, len(got), len(want))
		}
	}
	if _, err := (EnrollConfig{StateDir: idDir}).identity(); err != nil {
		t.Errorf("identity after failed writes: %v", err)
	}
}
