package hubhost

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

// TestTakeOverSealsKubeKeys: the Kubernetes CAs and service-account key
// travel with the handoff, are stored only sealed, and come back on load;
// a handoff with a broken set is refused.
func TestTakeOverSealsKubeKeys(t *testing.T) {
	f := newFixture(t)
	keys := t.TempDir()
	if _, err := pki.InitKubeKeys(keys, "local", time.Now()); err != nil {
		t.Fatal(err)
	}
	files, err := pki.ReadKubeFiles(keys)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := simSealer(t, 9)
	ctx := context.Background()

	bad := f.handoff
	bad.KubeKeys = map[string][]byte{}
	for k, v := range files {
		bad.KubeKeys[k] = v
	}
	bad.KubeKeys[pki.EtcdCAKeyFile] = files[pki.KubeCAKeyFile]
	if _, err := f.keeper(sealer).TakeOver(ctx, "master", "master", "ops@admin", &bad); err == nil {
		t.Fatal("a handoff whose etcd CA key is another CA's was accepted")
	}

	f.handoff.KubeKeys = files
	k := f.keeper(sealer)
	run(t, k)
	if _, err := k.TakeOver(ctx, "master", "master", "ops@admin", &f.handoff); err != nil {
		t.Fatal(err)
	}
	sealed, err := os.ReadFile(filepath.Join(f.dir, FileKubeKeys))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) || bytes.Contains(sealed, files[pki.SAKeyFile]) {
		t.Error("the Kubernetes keys are stored in the clear")
	}
	if fi, _ := os.Stat(filepath.Join(f.dir, FileKubeKeys)); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %o", FileKubeKeys, fi.Mode().Perm())
	}
	k.cfg.EtcdSnapshotDir = "/data/kubedos/etcd-snapshots"
	cfg, err := k.load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EtcdSnapshotDir != k.cfg.EtcdSnapshotDir {
		t.Errorf("the loaded hub keeps etcd snapshots in %q, want the keeper's", cfg.EtcdSnapshotDir)
	}
	want, _ := pki.ParseKubeFiles(files)
	if cfg.Kube == nil || !cfg.Kube.Etcd.Certificate().Equal(want.Etcd.Certificate()) || !bytes.Equal(cfg.Kube.SAPubPEM, want.SAPubPEM) {
		t.Fatal("the reloaded hub lacks the handed Kubernetes keys")
	}
}
