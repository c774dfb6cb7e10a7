package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// A hub handed to a master must not be served again from its old state
// directory: that would be a second gate for the same CA.
func TestHubServeRefusesHandedOverState(t *testing.T) {
	dir := t.TempDir()
	keys, state, bdir := filepath.Join(dir, "keys"), filepath.Join(dir, "hub"), filepath.Join(dir, "build")
	if code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "local"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	ks, err := sign.LoadKeySet(keys)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ks.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	m := []byte(`{"kind":"BuildManifest","cluster":"local","buildID":"b-1"}`)
	sig, err := sign.SignBlob(key, m)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{
		filepath.Join(bdir, manifest.ManifestFile):  m,
		filepath.Join(bdir, manifest.SignatureFile): sig,
		filepath.Join(dir, "cluster.yaml"):          examples.Local,
		filepath.Join(state, cluster.HandoffFile):   []byte(`{"node":"master","addr":"10.20.0.10:7443","at":"2026-11-22T08:25:33Z"}`),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := run(t, "hub", "serve", filepath.Join(dir, "cluster.yaml"), "--build", bdir, "--keys", keys, "--state", state, "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "handed to master on 10.20.0.10:7443") {
		t.Fatalf("hub serve over a handed-over state: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "hub.db")); !os.IsNotExist(err) {
		t.Errorf("a refused serve made a new state: %v", err)
	}
}
