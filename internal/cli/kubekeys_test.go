package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/pki"
)

// TestKeysInitKubernetes: the ceremony makes the Kubernetes keys (0600);
// a key directory without them gets them added by --add-kubernetes, and
// never replaced.
func TestKeysInitKubernetes(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "t"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	first, err := pki.LoadKubeCAs(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range pki.KubePrivateFiles {
		if fi, err := os.Stat(filepath.Join(keys, rel)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", rel, err)
		}
	}
	code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "t", "--add-kubernetes")
	if code == 0 || !strings.Contains(stderr, "never overwritten") {
		t.Fatalf("--add-kubernetes over existing Kubernetes keys: code %d, %s", code, stderr)
	}
	// An older key directory: remove the Kubernetes half, then add it back.
	if err := os.RemoveAll(filepath.Join(keys, pki.KubeDir)); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "t", "--add-kubernetes"); code != 0 {
		t.Fatalf("--add-kubernetes: %s", stderr)
	}
	second, err := pki.LoadKubeCAs(keys)
	if err != nil {
		t.Fatal(err)
	}
	if second.Kubernetes.Certificate().Equal(first.Kubernetes.Certificate()) {
		t.Error("the added CA is the removed one")
	}
	pub := filepath.Join(t.TempDir(), "pub")
	if code, _, stderr := run(t, "keys", "init", "--dir", pub, "--cluster", "t", "--add-kubernetes"); code == 0 {
		t.Errorf("--add-kubernetes on no key directory succeeded: %s", stderr)
	}
}
