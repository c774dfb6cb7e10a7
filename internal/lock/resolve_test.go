package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/spec"
)

// TestResolveAgainstLocalMirror runs apt's real solver against a signed
// file:// mirror, so the whole resolve path is tested without a network.
func TestResolveAgainstLocalMirror(t *testing.T) {
	m := fixtureMirror(t)
	s := fixtureSpec("file://" + m.Dir)
	l, err := Resolve(context.Background(), s, ResolveOptions{Keyring: m.Keyring, TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	worker := []string{"apt", "base-files", "libapt-fake", "linux-image-6.1-test", "linux-image-test"}
	worker = append(worker, NodePackages...)
	slices.Sort(worker)
	etcd := slices.Sorted(slices.Values(append(slices.Clone(worker), "etcd-server")))
	if got := l.Roles[spec.RoleWorker]; !slices.Equal(got, worker) {
		t.Errorf("worker closure = %v\nwant %v", got, worker)
	}
	if got := l.Roles[spec.RoleEtcd]; !slices.Equal(got, etcd) {
		t.Errorf("etcd closure = %v\nwant %v", got, etcd)
	}
	if len(l.Roles) != 2 {
		t.Errorf("roles = %v, want only worker and etcd", l.Roles)
	}
	if l.SourceDateEpoch != fixtureEpoch {
		t.Errorf("SourceDateEpoch = %d, want the mirror Release Date %d", l.SourceDateEpoch, fixtureEpoch)
	}
	if p, _ := l.Package("apt"); p.Priority != "required" {
		t.Errorf("apt priority = %q, want the archive's override required", p.Priority)
	}
	if p, _ := l.Package("libapt-fake"); p.Version != "2:1.2+dfsg-3~bpo1" {
		t.Errorf("libapt-fake version = %q, want the epoch kept", p.Version)
	}
	if l.RequestDigest != RequestDigest(s) {
		t.Errorf("RequestDigest = %s, want %s", l.RequestDigest, RequestDigest(s))
	}
	if err := l.Covers(s); err != nil {
		t.Errorf("a fresh lock does not cover its spec: %v", err)
	}
	again, err := Resolve(context.Background(), s, ResolveOptions{Keyring: m.Keyring})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.Marshal()
	b, _ := again.Marshal()
	if string(a) != string(b) {
		t.Errorf("two resolutions of the same mirror differ")
	}
}

func TestResolveErrors(t *testing.T) {
	m := fixtureMirror(t)
	tests := []struct {
		name  string
		edit  func(*spec.ClusterSpec)
		opts  ResolveOptions
		want  string
		isErr error
	}{
		{"unknown package", func(s *spec.ClusterSpec) { s.OS.Packages = []string{"no-such-package"} },
			ResolveOptions{}, "no-such-package", nil},
		{"virtual package", func(s *spec.ClusterSpec) { s.OS.Packages = []string{"virtual-thing"} },
			ResolveOptions{}, "virtual-thing", errVirtual},
		{"option smuggled as a package", func(s *spec.ClusterSpec) { s.OS.Packages = []string{"-oAPT::X=1"} },
			ResolveOptions{}, "not a Debian package name", nil},
		{"untrusted mirror key", func(*spec.ClusterSpec) {},
			ResolveOptions{Keyring: DebianArchiveKeyring}, "NO_PUBKEY", nil},
		{"wrong suite", func(s *spec.ClusterSpec) { s.OS.Suite = "bookworm" }, ResolveOptions{}, "bookworm", nil},
		{"no nodes", func(s *spec.ClusterSpec) { s.Topology.Nodes = nil }, ResolveOptions{}, "no nodes", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fixtureSpec("file://" + m.Dir)
			tt.edit(s)
			opts := tt.opts
			if opts.Keyring == "" {
				opts.Keyring = m.Keyring
			}
			if _, err := os.Stat(opts.Keyring); err != nil {
				t.Skipf("keyring: %v", err)
			}
			_, err := Resolve(context.Background(), s, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Resolve = %v, want an error containing %q", err, tt.want)
			}
			if tt.isErr != nil && !errors.Is(err, tt.isErr) {
				t.Errorf("Resolve = %v, want errors.Is %v", err, tt.isErr)
			}
		})
	}
}

func TestUpdatePolicyWithMirror(t *testing.T) {
	m := fixtureMirror(t)
	opts := ResolveOptions{Keyring: m.Keyring}
	path := filepath.Join(t.TempDir(), FileName)
	s := fixtureSpec("file://" + m.Dir)
	ctx := context.Background()

	l, changed, err := Update(ctx, s, path, false, opts)
	if err != nil || !changed || l == nil {
		t.Fatalf("Update(no lock) = %v, %v, %v; want a new lock written", l, changed, err)
	}
	first, _ := os.ReadFile(path)

	s.OS.RolePackages[spec.RoleWorker] = []string{"real-thing"}
	_, _, err = Update(ctx, s, path, false, opts)
	if !errors.Is(err, ErrNotCovered) || !strings.Contains(err.Error(), "--update") || !strings.Contains(err.Error(), "real-thing") {
		t.Fatalf("Update(uncovered, no --update) = %v; want ErrNotCovered naming real-thing and --update", err)
	}
	if now, _ := os.ReadFile(path); string(now) != string(first) {
		t.Errorf("a refused Update changed the lockfile")
	}

	l, changed, err = Update(ctx, s, path, true, opts)
	if err != nil || !changed {
		t.Fatalf("Update(--update) = %v, %v", changed, err)
	}
	if !slices.Contains(l.Roles[spec.RoleWorker], "real-thing") {
		t.Errorf("re-resolved worker closure lacks real-thing: %v", l.Roles[spec.RoleWorker])
	}
	_, changed, err = Update(ctx, s, path, true, opts)
	if err != nil || changed {
		t.Errorf("Update(--update) with nothing new = changed %v, %v; want unchanged", changed, err)
	}
}
