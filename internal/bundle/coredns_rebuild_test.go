package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCoreDNSRebuildFromBundle rebuilds the CoreDNS that `make coredns`
// built (KUBEDOS_COREDNS) from a bundle made with the coredns/ module as
// --coredns-sources, as docs/recovery.md tells an operator to: the
// extracted coredns/src with scripts/coredns-build.sh, the extracted
// coredns/proxy the only GOPROXY, an empty module cache and output cache,
// and no network at all when `unshare -n` is allowed. The binary must be
// the same bytes. The Go build cache is coredns-build.sh's own (warm after
// make coredns: the compile is keyed by source content, so every package
// is still read from the bundle's zips); KUBEDOS_COREDNS_GOCACHE=<empty
// dir> makes it a cold rebuild of minutes.
func TestCoreDNSRebuildFromBundle(t *testing.T) {
	bin := os.Getenv("KUBEDOS_COREDNS")
	if bin == "" {
		t.Skip("KUBEDOS_COREDNS names the binary make coredns built (make coredns-rebuild)")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	built, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ks, _ := keys(t)
	src, _, _ := kubeFixtureWith(t, ks, []byte("kube multicall binary"), []byte("kube multicall binary"), built)
	src.CoreDNSModule = filepath.Join(root, "coredns")
	out := filepath.Join(t.TempDir(), "b.tar")
	start := time.Now()
	x, err := Create(ctx, src, out)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var size int64
	for _, f := range x.Files {
		if strings.HasPrefix(f.Path, DirCoreDNS+"/") {
			n, size = n+1, size+f.Size
		}
	}
	t.Logf("FIGURE coredns sources in the bundle: %d members, %d bytes; create %.1f s", n, size, time.Since(start).Seconds())
	dest := filepath.Join(t.TempDir(), "restore")
	if _, err := Extract(ctx, out, dest, ks.SigningPub); err != nil {
		t.Fatal(err)
	}

	// The go command makes its module cache read-only; removed with go
	// clean, as t.TempDir could not.
	modcache, err := os.MkdirTemp("", "coredns-modcache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := exec.Command("go", "clean", "-modcache")
		c.Env = append(os.Environ(), "GOMODCACHE="+modcache)
		_ = c.Run()
		_ = os.RemoveAll(modcache)
	})
	args := []string{"bash", filepath.Join(root, "scripts", "coredns-build.sh")}
	if exec.Command("unshare", "-n", "true").Run() == nil {
		args = append([]string{"unshare", "-n"}, args...)
	} else {
		t.Log("unshare -n not allowed here: offline by GOPROXY alone")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "COREDNS_MODULE="+filepath.Join(dest, DirCoreDNS, "src"),
		"GOPROXY=file://"+filepath.Join(dest, DirCoreDNS, "proxy"), "GOMODCACHE="+modcache,
		"KUBEDOS_COREDNS_CACHE="+t.TempDir(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start = time.Now()
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("FIGURE coredns rebuilt offline from the bundle in %.1f s", time.Since(start).Seconds())
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	got, _, _ := strings.Cut(lines[len(lines)-1], " ")
	sum := sha256.Sum256(built)
	if want := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("rebuilt coredns sha256 %s, %s is %s\n%s", got, bin, want, stderr.String())
	}
}
