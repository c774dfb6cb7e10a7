package lock

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/spec"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata golden files")

func sampleLock() *Lock {
	pkg := func(name, prio string) Package {
		return Package{Name: name, Version: "1.0-1", Architecture: "amd64",
			SHA256: strings.Repeat("ab", 32), Size: 1234, Filename: "pool/main/" + name[:1] + "/" + name + "/" + name + "_1.0-1_amd64.deb",
			Priority: prio}
	}
	return &Lock{
		APIVersion: APIVersion, Kind: Kind, Suite: "bookworm", Mirror: "http://deb.debian.org/debian",
		Components: []string{"main"}, Architecture: "amd64", SourceDateEpoch: 1700000000,
		RequestDigest: "sha256:" + strings.Repeat("0", 64),
		// Deliberately unsorted: Marshal must sort.
		Packages: []Package{pkg("systemd", "important"), pkg("base-files", "required"), pkg("etcd-server", "optional")},
		Roles: map[spec.Role][]string{
			spec.RoleWorker: {"systemd", "base-files"},
			spec.RoleEtcd:   {"systemd", "etcd-server", "base-files"},
		},
	}
}

func TestMarshalSortedAndStable(t *testing.T) {
	a, err := sampleLock().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	shuffled := sampleLock()
	p := shuffled.Packages
	shuffled.Packages = []Package{p[2], p[0], p[1]}
	shuffled.Roles[spec.RoleEtcd] = []string{"base-files", "etcd-server", "systemd"}
	b, err := shuffled.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("same lock in another order marshals differently:\n%s\n---\n%s", a, b)
	}
	golden := filepath.Join("testdata", "sample.lock")
	if *updateGolden {
		if err := os.WriteFile(golden, a, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, want) {
		t.Errorf("Marshal differs from %s (go test -run TestMarshal -update to accept):\n%s", golden, a)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := sampleLock().Write(path); err != nil {
		t.Fatal(err)
	}
	l, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := l.Package("etcd-server"); !ok || p.Priority != "optional" {
		t.Errorf("Package(etcd-server) = %+v, %v", p, ok)
	}
	again := filepath.Join(t.TempDir(), FileName)
	if err := l.Write(again); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(path)
	y, _ := os.ReadFile(again)
	if !bytes.Equal(x, y) {
		t.Errorf("Write(Read(Write(l))) is not byte-identical")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("Write left extra files: %v", entries)
	}
}

func TestWriteRefusesInvalidAndKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := sampleLock().Write(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	bad := sampleLock()
	bad.Packages[0].SHA256 = "nope"
	err := bad.Write(path)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Write(bad) = %v, want ErrInvalid naming %s", err, path)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("a refused Write changed the file")
	}
}

func TestReadStrict(t *testing.T) {
	good, err := sampleLock().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"unknown top-level field", func(s string) string {
			return strings.Replace(s, `"suite"`, `"suit": "x", "suite"`, 1)
		}, `unknown field "suit"`},
		{"unknown package field", func(s string) string {
			return strings.Replace(s, `"name": "systemd"`, `"name": "systemd", "md5": "x"`, 1)
		}, `unknown field "md5"`},
		{"trailing document", func(s string) string { return s + "{}\n" }, "data after the lock document"},
		{"wrong kind", func(s string) string {
			return strings.Replace(s, `"kind": "Lock"`, `"kind": "ClusterSpec"`, 1)
		}, "apiVersion/kind"},
		{"bad digest", func(s string) string { return strings.Replace(s, strings.Repeat("ab", 32), "abc", 1) }, "sha256 \"abc\""},
		{"path escape", func(s string) string {
			return strings.Replace(s, "pool/main/s/systemd/systemd_1.0-1_amd64.deb", "pool/../../etc/x.deb", 1)
		}, "not a clean pool"},
		{"duplicate package", func(s string) string {
			return strings.Replace(s, `"name": "etcd-server"`, `"name": "systemd"`, 1)
		}, `"systemd" is listed twice`},
		{"role names an unlocked package", func(s string) string {
			return strings.Replace(s, `"etcd": [
      "base-files"`, `"etcd": [
      "bash"`, 1)
		}, `package "bash" is not in packages`},
		{"unknown role", func(s string) string { return strings.Replace(s, `"worker":`, `"wrker":`, 1) }, `unknown role "wrker"`},
		{"bad priority", func(s string) string { return strings.Replace(s, `"priority": "optional"`, `"priority": "urgent"`, 1) }, `priority "urgent"`},
		{"not JSON", func(string) string { return "apiVersion: x\n" }, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			edited := tt.edit(string(good))
			if edited == string(good) {
				t.Fatal("edit did not change the document")
			}
			if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if err == nil {
				t.Fatal("Read accepted a bad lock")
			}
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read = %v\nwant ErrInvalid naming %s and containing %q", err, path, tt.want)
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "none.lock"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "none.lock") {
		t.Errorf("Read(missing) = %v", err)
	}
}
