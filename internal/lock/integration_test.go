//go:build integration

package lock

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/spec"
)

// TestIntegrationDebian resolves a one-node bookworm spec against
// deb.debian.org, fetches the closure, builds the darksite repo, proves apt
// accepts its signature and indexes, and bootstraps a root from it offline.
//
//	go test -tags integration -run TestIntegrationDebian -v -timeout 30m ./internal/lock/
func TestIntegrationDebian(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	s := &spec.ClusterSpec{
		OS: spec.OS{Suite: "bookworm", Mirror: spec.DefaultMirror, KernelFlavour: "cloud-amd64"},
		Topology: spec.Topology{Nodes: []spec.Node{
			{Name: "w1", Role: spec.RoleWorker},
		}},
	}
	start := time.Now()
	l, err := Resolve(ctx, s, ResolveOptions{})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	var total int64
	for _, p := range l.Packages {
		total += p.Size
	}
	t.Logf("Resolve (update + one role): %s; %d packages, %.1f MiB; SOURCE_DATE_EPOCH %d",
		time.Since(start).Round(time.Millisecond), len(l.Packages), float64(total)/(1<<20), l.SourceDateEpoch)
	if err := l.Covers(s); err != nil {
		t.Fatalf("fresh lock does not cover its spec: %v", err)
	}
	three := *s
	three.Topology.Nodes = append(slices.Clone(s.Topology.Nodes),
		spec.Node{Name: "e1", Role: spec.RoleEtcd}, spec.Node{Name: "c1", Role: spec.RoleControlPlane})
	start = time.Now()
	if _, err := Resolve(ctx, &three, ResolveOptions{}); err != nil {
		t.Fatalf("Resolve three roles: %v", err)
	}
	t.Logf("Resolve (update + three roles): %s", time.Since(start).Round(time.Millisecond))
	work := t.TempDir()
	if err := l.Write(filepath.Join(work, FileName)); err != nil {
		t.Fatal(err)
	}

	opts := FetchOptions{CacheDir: filepath.Join(work, "cache"), RepoDir: filepath.Join(work, "repo"),
		KeyFile: writeTestKey(t, work), Parallel: 4}
	start = time.Now()
	repo, err := Fetch(ctx, l, opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	t.Logf("Fetch cold: %s", time.Since(start).Round(time.Millisecond))
	first, _ := os.ReadFile(filepath.Join(repo.Dir, "dists", RepoSuite, "InRelease"))
	start = time.Now()
	if repo, err = Fetch(ctx, l, opts); err != nil {
		t.Fatalf("Fetch warm: %v", err)
	}
	t.Logf("Fetch warm (re-verify only): %s", time.Since(start).Round(time.Millisecond))
	second, _ := os.ReadFile(filepath.Join(repo.Dir, "dists", RepoSuite, "InRelease"))
	if string(first) != string(second) {
		t.Errorf("InRelease differs between two fetches of the same lock")
	}

	// apt itself is the oracle for the signature and the indexes.
	env, err := newAptEnv(work, l.Architecture, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	if err := env.setSources(repo.SourcesLine() + "\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.run(ctx, "update", "-q", "--error-on=any"); err != nil {
		t.Fatalf("apt-get update against the darksite repo: %v", err)
	}
	if _, err := env.run(ctx, "install", "-s", "-q", "-y", "systemd", KernelPackage("cloud-amd64")); err != nil {
		t.Fatalf("apt-get -s install from the darksite repo: %v", err)
	}

	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skip("mmdebstrap not installed; apt part passed")
	}
	root := filepath.Join(work, "root")
	args := []string{"--variant=required", "--architectures=" + l.Architecture,
		"--include=" + strings.Join(Requests(s, spec.RoleWorker), ","),
		RepoSuite, root, repo.MmdebstrapSource()}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		// No network at all: the root must come from the darksite repo alone.
		cmd = exec.CommandContext(ctx, "unshare", append([]string{"-n", "mmdebstrap", "--mode=root"}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, "mmdebstrap", append([]string{"--mode=unshare"}, args...)...)
	}
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(l.SourceDateEpoch, 10))
	start = time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v\n%s", err, tail(out, 4000))
	}
	t.Logf("mmdebstrap offline: %s", time.Since(start).Round(time.Millisecond))
	out, err := exec.CommandContext(ctx, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"),
		"-W", "-f=${Package}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	installed := strings.Fields(string(out))
	slices.Sort(installed)
	if !slices.Equal(installed, l.Roles[spec.RoleWorker]) {
		t.Errorf("installed set differs from the locked worker closure:\n only installed: %v\n only locked: %v",
			minus(installed, l.Roles[spec.RoleWorker]), minus(l.Roles[spec.RoleWorker], installed))
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
