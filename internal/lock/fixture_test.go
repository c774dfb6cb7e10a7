package lock

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/spec"
)

const fixtureEpoch = 1700000000

// fixtureDebs is the smallest archive Resolve can work with: a required
// essential package, apt, a kernel metapackage with its image, the node
// base, a role package and a virtual package.
func fixtureDebs() []fakeDeb {
	debs := []fakeDeb{
		{Name: "base-files", Priority: "required", Essential: true},
		// apt's own control says important; the fixture archive overrides
		// it to required, as Debian's does.
		{Name: "apt", Priority: "important", Depends: "libapt-fake"},
		{Name: "libapt-fake", Version: "2:1.2+dfsg-3~bpo1"},
		{Name: "linux-image-test", Depends: "linux-image-6.1-test"},
		{Name: "linux-image-6.1-test"},
		{Name: "etcd-server", Arch: "all"},
		{Name: "real-thing", Provides: "virtual-thing"},
	}
	for _, n := range NodePackages {
		debs = append(debs, fakeDeb{Name: n})
	}
	return debs
}

// fixtureArchive builds the debs into a source directory and a lock over
// them, with archive priority overrides applied.
func fixtureArchive(t *testing.T, debs []fakeDeb, overrides map[string]string) (src string, l *Lock) {
	t.Helper()
	src = t.TempDir()
	l = &Lock{APIVersion: APIVersion, Kind: Kind, Suite: RepoSuite, Mirror: "file://" + src,
		Components: []string{"main"}, Architecture: "amd64", SourceDateEpoch: fixtureEpoch,
		RequestDigest: "sha256:" + strings.Repeat("0", 64), Roles: map[spec.Role][]string{}}
	for _, d := range debs {
		p, _ := buildDeb(t, src, d)
		if o, ok := overrides[p.Name]; ok {
			p.Priority = o
		}
		l.Packages = append(l.Packages, p)
		l.Roles[spec.RoleWorker] = append(l.Roles[spec.RoleWorker], p.Name)
	}
	slices.SortFunc(l.Packages, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return src, l
}

// fixtureMirror is a signed local mirror made by Fetch itself from the
// fixture archive: Resolve then runs real apt against it, offline.
func fixtureMirror(t *testing.T) *Repo {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not installed")
	}
	_, l := fixtureArchive(t, fixtureDebs(), map[string]string{"apt": "required"})
	dir := t.TempDir()
	repo, err := Fetch(context.Background(), l, FetchOptions{CacheDir: filepath.Join(dir, "cache"),
		RepoDir: filepath.Join(dir, "mirror"), KeyFile: writeTestKey(t, dir)})
	if err != nil {
		t.Fatalf("building the fixture mirror: %v", err)
	}
	return repo
}

func fixtureSpec(mirror string) *spec.ClusterSpec {
	return &spec.ClusterSpec{
		OS: spec.OS{Suite: RepoSuite, Mirror: mirror, Components: []string{"main"}, Architecture: "amd64",
			KernelFlavour: "test", RolePackages: map[spec.Role][]string{spec.RoleEtcd: {"etcd-server"}}},
		Topology: spec.Topology{Nodes: []spec.Node{
			{Name: "w1", Role: spec.RoleWorker}, {Name: "e1", Role: spec.RoleEtcd}, {Name: "e2", Role: spec.RoleEtcd},
		}},
	}
}
