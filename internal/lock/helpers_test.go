package lock

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// testSeed makes every test key the same, so signatures can be compared.
var testSeed = []byte("kubedos-lock-test-seed-32-bytes!")

func testKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(testSeed) }

// writeTestKey stores the test key as the artifact key file another
// package writes in production: PKCS#8 PEM.
func writeTestKey(t *testing.T, dir string) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(testKey())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "signing.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeDeb describes a tiny real .deb made with dpkg-deb --build.
type fakeDeb struct {
	Name, Version, Arch string
	Depends, Provides   string
	Priority            string // in the control file; the archive may override it
	Essential           bool
}

// buildDeb builds the package into dir and returns it as a lock entry
// whose Filename is its pool path.
func buildDeb(t *testing.T, dir string, d fakeDeb) (Package, string) {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	if d.Version == "" {
		d.Version = "1.0-1"
	}
	if d.Arch == "" {
		d.Arch = "amd64"
	}
	if d.Priority == "" {
		d.Priority = "optional"
	}
	tree := filepath.Join(t.TempDir(), d.Name)
	if err := os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "usr/share/doc", d.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr/share/doc", d.Name, "README"), []byte(d.Name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctrl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: kubedos tests <tests@kubedos.invalid>\nPriority: %s\n",
		d.Name, d.Version, d.Arch, d.Priority)
	if d.Essential {
		ctrl += "Essential: yes\n"
	}
	if d.Depends != "" {
		ctrl += "Depends: " + d.Depends + "\n"
	}
	if d.Provides != "" {
		ctrl += "Provides: " + d.Provides + "\n"
	}
	ctrl += "Description: kubedos test package " + d.Name + "\n a tiny package for tests.\n .\n It has a long description.\n"
	if err := os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte(ctrl), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", d.Name[0], d.Name, d.Name, d.Version, d.Arch)
	out := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return Package{Name: d.Name, Version: d.Version, Architecture: d.Arch, SHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(data)), Filename: rel, Priority: d.Priority}, out
}
