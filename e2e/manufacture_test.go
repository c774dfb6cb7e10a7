//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/build"
)

// cluster is one manufactured build, shared by the boot tests.
type cluster struct {
	dir      string // working directory with the spec, lock and keys
	buildDir string
	manifest *build.Manifest
}

var made *cluster

// makeSite runs the operator's sequence in work/name for a spec file: keys,
// lock, fetch into cache, build into out. It returns the site directory and
// the absolute build directory.
func makeSite(t *testing.T, name, specFile, clusterName, cache, out string) (string, string) {
	t.Helper()
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, dir, "keys", "init", "--dir", "keys", "--cluster", clusterName)
	must(t, dir, "lock", "cluster.yaml")
	must(t, dir, "fetch", "cluster.yaml", "--cache", cache)
	buildDir := strings.TrimSpace(lastLines(must(t, dir, "build", "cluster.yaml", "--cache", cache, "--out", out, "--node-binaries", bin), 1))
	if !filepath.IsAbs(buildDir) {
		buildDir = filepath.Join(dir, buildDir)
	}
	return dir, buildDir
}

// manufacture runs the operator's sequence once: keys, lock, fetch, build.
func manufacture(t *testing.T) *cluster {
	t.Helper()
	if made != nil {
		return made
	}
	dir, buildDir := makeSite(t, "site", "testdata/one.yaml", "e2e", "cache1", "out1")
	m, _, err := build.ReadManifest(filepath.Join(buildDir, build.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	made = &cluster{dir: dir, buildDir: buildDir, manifest: m}
	return made
}

func (c *cluster) role(file string) string { return filepath.Join(c.buildDir, "roles", "master", file) }

func TestBuildVerifies(t *testing.T) {
	c := manufacture(t)
	must(t, c.dir, "verify", c.buildDir, "--keys", "keys")
	// A second build with nothing changed does nothing.
	var rep struct{ Reused bool }
	out := must(t, c.dir, "build", "cluster.yaml", "--cache", "cache1", "--out", "out1", "--node-binaries", bin, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Reused {
		t.Fatalf("rebuild with nothing changed did work: %s", out)
	}
}

// TestIndependentOracles checks our claims with tools that are not ours.
func TestIndependentOracles(t *testing.T) {
	c := manufacture(t)
	db := filepath.Join(c.dir, "keys", "secureboot", "db.crt")
	for _, efi := range []string{build.FileUKI, build.FileBootEFI} {
		out := tool(t, "sbverify", "--cert", db, c.role(efi))
		if !strings.Contains(out, "Signature verification OK") {
			t.Errorf("sbverify %s: %s", efi, out)
		}
	}
	rm := c.manifest.Roles["master"]
	tool(t, "veritysetup", "verify", c.role(build.FileRoot), c.role(build.FileVerity), rm.RootHash)
	var table struct {
		PartitionTable struct {
			Label      string
			Partitions []struct{ Name, Type string }
		}
	}
	if err := json.Unmarshal([]byte(tool(t, "sfdisk", "-J", c.role(build.FileDiskRaw))), &table); err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, typ string }{
		{"esp", build.TypeESP}, {"root-a", build.TypeRoot}, {"verity-a", build.TypeRootVerity},
		{"root-b", build.TypeRoot}, {"verity-b", build.TypeRootVerity}, {"state", build.TypeVar}, {"data", build.TypeSrv},
	}
	got := table.PartitionTable.Partitions
	if table.PartitionTable.Label != "gpt" || len(got) != len(want) {
		t.Fatalf("sfdisk sees %+v", table.PartitionTable)
	}
	for i, w := range want {
		if got[i].Name != w.name || !strings.EqualFold(got[i].Type, w.typ) {
			t.Errorf("partition %d: sfdisk sees %s %s, want %s %s", i+1, got[i].Name, got[i].Type, w.name, w.typ)
		}
	}
	// unsquashfs reads the root and finds kubedosd enabled in it.
	ls := tool(t, "unsquashfs", "-l", c.role(build.FileRoot))
	for _, p := range []string{"squashfs-root/usr/bin/kubedosd", "squashfs-root/etc/systemd/system/multi-user.target.wants/kubedosd.service"} {
		if !strings.Contains(ls, p+"\n") {
			t.Errorf("root image has no %s", p)
		}
	}
}

// TestVerifyNamesTamperedFile changes one byte of each output in turn; verify
// must fail and name that file.
func TestVerifyNamesTamperedFile(t *testing.T) {
	c := manufacture(t)
	files := []string{
		"roles/master/" + build.FileUKI, "roles/master/" + build.FileBootEFI, "roles/master/" + build.FileRoot,
		"roles/master/" + build.FileVerity, "roles/master/" + build.FileSBOM, "roles/master/" + build.FileInitrd,
		"roles/master/" + build.FileCmdline, build.ManifestFile, build.ProvenanceRel, build.LockFile,
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			clone := filepath.Join(work, "tamper")
			os.RemoveAll(clone)
			// Hard links keep the clone cheap; the tampered file gets its own copy.
			tool(t, "cp", "-al", c.buildDir, clone)
			defer os.RemoveAll(clone)
			path := filepath.Join(clone, f)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			os.Remove(path)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r := run(t, c.dir, nil, "verify", clone, "--keys", "keys")
			if r.code == 0 {
				t.Fatalf("verify accepted a build with %s changed", f)
			}
			named := []string{f}
			if f == build.ManifestFile {
				// A changed manifest is unreadable or fails its signature.
				named = append(named, build.SignatureFile)
			}
			for _, n := range named {
				if strings.Contains(r.stderr, filepath.Join(clone, n)) {
					return
				}
			}
			t.Fatalf("verify did not name %s:\n%s", f, r.stderr)
		})
	}
}

// TestReproducibleOffline builds again from an empty package cache and an
// empty output store, with the network cut off for the build, and expects
// byte-identical images.
func TestReproducibleOffline(t *testing.T) {
	c := manufacture(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed")
	}
	must(t, c.dir, "fetch", "cluster.yaml", "--cache", "cache2")
	r := run(t, c.dir, []string{"unshare", "-n"}, "build", "cluster.yaml", "--cache", "cache2", "--out", "out2", "--node-binaries", bin)
	if r.code != 0 {
		t.Fatalf("offline build failed:\n%s", r.stderr)
	}
	second := strings.TrimSpace(lastLines(r.stdout, 1))
	if !filepath.IsAbs(second) {
		second = filepath.Join(c.dir, second)
	}
	if filepath.Base(second) != filepath.Base(c.buildDir) {
		t.Errorf("build id differs: %s vs %s", filepath.Base(second), filepath.Base(c.buildDir))
	}
	for _, f := range []string{build.FileUKI, build.FileBootEFI, build.FileRoot, build.FileVerity, build.FileInitrd, build.FileDiskRaw, build.FileDiskQcow2, build.FileSBOM} {
		a, _ := os.ReadFile(c.role(f))
		b, _ := os.ReadFile(filepath.Join(second, "roles", "master", f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds from empty caches", f)
		}
	}
	a, _ := os.ReadFile(filepath.Join(c.buildDir, build.ManifestFile))
	b, _ := os.ReadFile(filepath.Join(second, build.ManifestFile))
	if !bytes.Equal(a, b) {
		t.Error("manifests differ")
	}
}
