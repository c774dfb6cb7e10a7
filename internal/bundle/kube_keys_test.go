package bundle

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

// TestKubeKeysStayOut: a key directory that also holds the Kubernetes CAs
// and service-account key gives a bundle with none of their private halves.
func TestKubeKeysStayOut(t *testing.T) {
	ks, _ := keys(t)
	if _, err := pki.InitKubeKeys(ks.Dir, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	secrets, err := pki.ReadKubeFiles(ks.Dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b.tar")
	if _, err := Create(context.Background(), fixture(t, ks), out); err != nil {
		t.Fatal(err)
	}
	for name, data := range members(t, out) {
		if strings.HasSuffix(name, ".key") || bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s: a private key in the bundle", name)
		}
		for _, rel := range pki.KubePrivateFiles {
			if bytes.Contains(data, bytes.TrimSpace(secrets[rel])) {
				t.Errorf("%s carries %s", name, rel)
			}
		}
	}
}
