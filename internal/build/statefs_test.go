package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubedos/kubedos/internal/earlyboot"
)

// TestSparseStateFSChecks is the claim MakeStateFS rests on: written
// sparse over noise (what a fresh crypt mapping reads as), the state
// filesystem is a clean ext4 to e2fsck, the oracle. It is also small and
// reproducible.
func TestSparseStateFSChecks(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck")
	dir := t.TempDir()
	const sizeMiB = 63
	sp, err := MakeStateFS(context.Background(), dir, "state", DerivedUUID("t", "state-fs"), sizeMiB, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	again, err := MakeStateFS(context.Background(), dir, "state", DerivedUUID("t", "state-fs"), sizeMiB, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sp, again) {
		t.Error("the state filesystem is not reproducible")
	}
	t.Logf("sparse state filesystem: %d bytes for %d MiB", len(sp), sizeMiB)
	if len(sp) > 2<<20 {
		t.Errorf("sparse state filesystem is %d bytes: more than metadata was written", len(sp))
	}
	noise := make([]byte, sizeMiB<<20)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "mapped.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(noise); err != nil {
		t.Fatal(err)
	}
	if _, err := earlyboot.WriteSparse(f, sp); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("e2fsck", "-f", "-n", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck of the state filesystem over noise: %v\n%s", err, out)
	}
}
