package build

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
)

func roleKeys(t *testing.T, edit func(*spec.ClusterSpec)) map[spec.Role]string {
	t.Helper()
	return roleKeysWith(t, []byte("kube v1"), func(o *Options) { edit(o.Spec) })
}

// roleKeysWith is every role's content address for the kube fixture
// holding kube, its options changed by edit (nil: as they are).
func roleKeysWith(t *testing.T, kube []byte, edit func(*Options)) map[spec.Role]string {
	t.Helper()
	o := kubeFixture(t, kube)
	if edit != nil {
		edit(&o)
	}
	o.Lock = &lock.Lock{Suite: "bookworm", SourceDateEpoch: 1}
	o.Keys = &sign.KeySet{CA: &x509.Certificate{Raw: []byte("ca")}}
	in, err := readKubeInputs(o, lock.Roles(o.Spec))
	if err != nil {
		t.Fatal(err)
	}
	out := map[spec.Role]string{}
	for _, r := range lock.Roles(o.Spec) {
		out[r] = roleKey(o, r, &manifest.Manifest{}, newKubeKey(roleKube(o, r), in))
	}
	return out
}

// Roots are derived from a base shared by the build's roles: a role's
// address must change with what its base is made of, and one role's own
// packages must not move any other role's.
func TestRoleKeyBase(t *testing.T) {
	before := roleKeys(t, func(*spec.ClusterSpec) {})
	worker := roleKeys(t, func(s *spec.ClusterSpec) {
		s.OS.RolePackages = map[spec.Role][]string{spec.RoleWorker: {"jq"}}
	})
	for r, id := range before {
		if changed := worker[r] != id; changed != (r == spec.RoleWorker) {
			t.Errorf("%s: a worker package changed its address: %v", r, changed)
		}
	}
	// The same requests for the worker, but jq now comes with every role's
	// base: the worker's root is derived differently, so its address moves.
	moved := roleKeys(t, func(s *spec.ClusterSpec) {
		s.OS.Packages = append(s.OS.Packages, "jq")
		s.OS.RolePackages = map[spec.Role][]string{spec.RoleWorker: {"jq"}}
	})
	if moved[spec.RoleWorker] == worker[spec.RoleWorker] {
		t.Error("the worker kept its address when its base changed")
	}
}

func TestMissingFrom(t *testing.T) {
	got := missingFrom([]string{"a", "containerd", "runc", "systemd"}, []string{"a", "systemd"})
	if !slices.Equal(got, []string{"containerd", "runc"}) {
		t.Errorf("missingFrom = %v", got)
	}
	if got := missingFrom([]string{"a"}, []string{"a", "b"}); len(got) != 0 {
		t.Errorf("a role with only base packages has extras %v", got)
	}
}

func TestOnlyLocked(t *testing.T) {
	inst := []Installed{{"systemd", "252", "amd64"}, {"containerd", "1.6", "amd64"}}
	if err := onlyLocked(inst, []string{"containerd", "systemd", "udev"}, spec.RoleWorker); err != nil {
		t.Errorf("locked packages refused: %v", err)
	}
	err := onlyLocked(inst, []string{"systemd"}, spec.RoleMaster)
	if err == nil || !strings.Contains(err.Error(), "containerd 1.6") || !strings.Contains(err.Error(), "master") {
		t.Errorf("a package outside the role's lock: %v", err)
	}
}

// A base under an overlay, a copied base and a moved one are the same
// tree: how a role gets the base must not change any role's bytes. A
// role's changes under the overlay leave the base as it was.
func TestPlaceBase(t *testing.T) {
	if _, err := exec.LookPath("cp"); err != nil {
		t.Skip("no cp")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	for p, data := range map[string]string{"etc/hostname": "h\n", "usr/bin/x": "bin"} {
		if err := os.MkdirAll(filepath.Join(base, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, p), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(base, "usr/bin/x"), filepath.Join(base, "usr/bin/y")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("x", filepath.Join(base, "usr/bin/z")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := treeOf(t, base)
	placed := []string{"copy"}
	// A path overlayfs options cannot carry falls back to a copy.
	release, err := placeBase(ctx, base, filepath.Join(dir, "copy,x"), false)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if err := os.Rename(filepath.Join(dir, "copy,x"), filepath.Join(dir, "copy")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		release, err := placeBase(ctx, base, filepath.Join(dir, "overlay"), false)
		if err != nil {
			t.Fatal(err)
		}
		if got := treeOf(t, filepath.Join(dir, "overlay")); !slices.Equal(got, want) {
			t.Errorf("overlay:\n%v\nwant\n%v", got, want)
		}
		// What a derive does: write over a file in place, add, remove.
		if err := os.WriteFile(filepath.Join(dir, "overlay", "usr/bin/x"), []byte("changed"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "overlay", "etc/new"), []byte("n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "overlay", "etc/hostname")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "overlay")); err == nil {
			t.Error("the overlay's mount point could be removed while mounted")
		}
		release()
		if got := treeOf(t, base); !slices.Equal(got, want) {
			t.Errorf("the role's changes reached the base:\n%v\nwant\n%v", got, want)
		}
		if err := os.RemoveAll(filepath.Join(dir, "overlay")); err != nil {
			t.Errorf("after release the role's root is not removable: %v", err)
		}
	}
	release, err = placeBase(ctx, base, filepath.Join(dir, "moved"), true)
	if err != nil {
		t.Fatal(err)
	}
	release()
	placed = append(placed, "moved")
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("the base is still there after it was taken: %v", err)
	}
	for _, d := range placed {
		if got := treeOf(t, filepath.Join(dir, d)); !slices.Equal(got, want) {
			t.Errorf("%s:\n%v\nwant\n%v", d, got, want)
		}
	}
	if _, err := placeBase(ctx, "", filepath.Join(dir, "none"), false); err == nil {
		t.Error("a root derived from no base")
	}
}

// treeOf lists path, mode, link target or content, and link count.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + string(b) + " links=" + linkCount(fi)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The build's dpkg skips fsync only while mmdebstrap runs: the setup hook
// writes the setting, the customize hook takes it out of the root again
// (mmdebstrap runs a hook that is not a file with sh -c, the root as $1).
func TestUnsafeIOOnlyWhileBuilding(t *testing.T) {
	root := t.TempDir()
	hooks := map[string]string{}
	for _, a := range mmdebstrapArgs("required", "amd64", []string{"systemd"}, root, "deb copy:///x kubedos main") {
		for _, h := range []string{"--setup-hook=", "--customize-hook="} {
			if cmd, ok := strings.CutPrefix(a, h); ok {
				hooks[h] = cmd
			}
		}
	}
	run := func(hook string) {
		t.Helper()
		if out, err := exec.Command("sh", "-c", hooks[hook], "exec", root).CombinedOutput(); err != nil {
			t.Fatalf("%s%s: %v: %s", hook, hooks[hook], err, out)
		}
	}
	conf := filepath.Join(root, unsafeIOConf)
	run("--setup-hook=")
	if b, err := os.ReadFile(conf); err != nil || string(b) != "force-unsafe-io\n" {
		t.Fatalf("after the setup hook %s = %q, %v", conf, b, err)
	}
	run("--customize-hook=")
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Fatalf("after the customize hook %s is still there (%v): it would be in the image", conf, err)
	}
}
