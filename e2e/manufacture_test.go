//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
)

// cluster is one manufactured build, shared by the boot tests.
type cluster struct {
	dir      string // working directory with the spec, lock and keys
	buildDir string
	manifest *manifest.Manifest
}

var made *cluster

// makeSite runs the operator's sequence in work/name for a spec file: keys,
// lock, fetch into cache, build into out. It returns the site directory and
// the absolute build directory.
func makeSite(t *testing.T, name, specFile, clusterName, cache, out string, buildArgs ...string) (string, string) {
	t.Helper()
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	// KUBEDOS_E2E_SUITE runs a drill on another Debian suite than the
	// spec's (trixie: docs/kubernetes.md) without a copy of each example.
	if suite := os.Getenv("KUBEDOS_E2E_SUITE"); suite != "" {
		re := regexp.MustCompile(`(?m)^  suite: *[a-z]+`)
		if !re.Match(spec) {
			t.Fatalf("KUBEDOS_E2E_SUITE=%s: %s names no os.suite to replace", suite, specFile)
		}
		spec = re.ReplaceAll(spec, []byte("  suite: "+suite))
		t.Logf("KUBEDOS_E2E_SUITE: %s on Debian %s", specFile, suite)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, dir, "keys", "init", "--dir", "keys", "--cluster", clusterName)
	must(t, dir, "lock", "cluster.yaml")
	must(t, dir, "fetch", "cluster.yaml", "--cache", cache)
	buildDir := strings.TrimSpace(lastLines(must(t, dir, append([]string{"build", "cluster.yaml", "--cache", cache, "--out", out, "--node-binaries", bin}, buildArgs...)...), 1))
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
	m, _, err := manifest.Read(filepath.Join(buildDir, manifest.ManifestFile))
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
	// dpkg's no-fsync setting is for the build only, never in an image.
	if list := tool(t, "unsquashfs", "-l", c.role(build.FileRoot)); strings.Contains(list, "kubedos-build-unsafe-io") || !strings.Contains(list, "/etc/dpkg/dpkg.cfg.d") {
		var lines []string
		for _, l := range strings.Split(list, "\n") {
			if strings.Contains(l, "dpkg.cfg.d") {
				lines = append(lines, l)
			}
		}
		t.Errorf("the root's /etc/dpkg/dpkg.cfg.d: %q", lines)
	}
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
		"roles/master/" + build.FileCmdline, manifest.ManifestFile, manifest.ProvenanceRel, manifest.LockFile,
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
			if f == manifest.ManifestFile {
				// A changed manifest is unreadable or fails its signature.
				named = append(named, manifest.SignatureFile)
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
	a, _ := os.ReadFile(filepath.Join(c.buildDir, manifest.ManifestFile))
	b, _ := os.ReadFile(filepath.Join(second, manifest.ManifestFile))
	if !bytes.Equal(a, b) {
		t.Error("manifests differ")
	}
}

// TestRecoveryBundleRebuild walks the total-loss runbook (seed 004 §18.2):
// bundle the build, check the bundle, see a one-byte change refused with
// its member named, unpack it, and rebuild with no network from nothing
// but the bundle and the keys — the same build-id and the same bytes.
func TestRecoveryBundleRebuild(t *testing.T) {
	c := manufacture(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed")
	}
	file := filepath.Join(c.dir, "recovery.bundle.tar")
	start := time.Now()
	must(t, c.dir, "bundle", "create", c.buildDir, "--keys", "keys", "--cache", "cache1", "--node-binaries", bin, "--file", file)
	t.Logf("FIGURE bundle create: %.1fs", time.Since(start).Seconds())
	start = time.Now()
	var rep struct {
		OK      bool
		BuildID string
		Files   int
	}
	if err := json.Unmarshal([]byte(must(t, c.dir, "bundle", "verify", file, "--keys", "keys", "-o", "json")), &rep); err != nil ||
		!rep.OK || rep.BuildID != filepath.Base(c.buildDir) || rep.Files < 100 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	t.Logf("FIGURE bundle verify: %.1fs", time.Since(start).Seconds())
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// No private key's bytes anywhere in it (kubedosd itself holds the
	// string "PRIVATE KEY", so the keys' own contents are what is looked for).
	for _, k := range []string{"secureboot/PK.key", "secureboot/KEK.key", "secureboot/db.key", "artifact/signing.key", "ca/ca.key", "ca/admin.key"} {
		pem, err := os.ReadFile(filepath.Join(c.dir, "keys", k))
		if err != nil {
			t.Fatal(err)
		}
		if lines := bytes.Split(pem, []byte("\n")); len(lines) < 2 || bytes.Contains(raw, lines[1]) {
			t.Errorf("keys/%s: its key material is in the bundle", k)
		}
	}

	// One changed byte in the lock, inside the bundle: refused, and named.
	lockBytes, err := os.ReadFile(filepath.Join(c.buildDir, "inputs", "kubedos.lock"))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(raw, lockBytes)
	if at < 0 {
		t.Fatal("the lock is not in the bundle")
	}
	bad := append([]byte(nil), raw...)
	bad[at+len(lockBytes)/2] ^= 1
	badFile := filepath.Join(c.dir, "tampered.bundle.tar")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, c.dir, nil, "bundle", "verify", badFile, "--keys", "keys"); r.code != 1 || !strings.Contains(r.stderr, "inputs/kubedos.lock: sha256") {
		t.Errorf("tampered bundle: exit %d, stderr %s", r.code, r.stderr)
	}
	if r := run(t, c.dir, nil, "bundle", "extract", badFile, "--dir", "restore-bad", "--keys", "keys"); r.code != 1 {
		t.Errorf("tampered bundle extracted: exit %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "restore-bad")); !os.IsNotExist(err) {
		t.Errorf("a refused extract left restore-bad: %v", err)
	}

	// Unpack, and rebuild offline from the bundle alone (plus the keys).
	must(t, c.dir, "bundle", "extract", file, "--dir", "restore", "--keys", "keys")
	start = time.Now()
	r := run(t, c.dir, []string{"unshare", "-n"}, "build", "restore/inputs/cluster.yaml", "--repo", "restore/darksite",
		"--node-binaries", "restore/bin", "--keys", "keys", "--cache", "cache-restore", "--out", "out-restore")
	if r.code != 0 {
		t.Fatalf("rebuild from the bundle failed:\n%s", r.stderr)
	}
	t.Logf("FIGURE rebuild from the recovery bundle, offline: %.0fs", time.Since(start).Seconds())
	rebuilt := strings.TrimSpace(lastLines(r.stdout, 1))
	if !filepath.IsAbs(rebuilt) {
		rebuilt = filepath.Join(c.dir, rebuilt)
	}
	if filepath.Base(rebuilt) != filepath.Base(c.buildDir) {
		t.Errorf("rebuilt build-id %s, the bundle's is %s", filepath.Base(rebuilt), filepath.Base(c.buildDir))
	}
	for _, f := range []string{manifest.ManifestFile, "roles/master/" + build.FileUKI, "roles/master/" + build.FileRoot, "roles/master/" + build.FileDiskQcow2} {
		a, _ := os.ReadFile(filepath.Join(c.buildDir, f))
		b, _ := os.ReadFile(filepath.Join(rebuilt, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the build and its rebuild from the bundle", f)
		}
	}
}
