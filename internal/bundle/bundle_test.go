package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

var (
	keysOnce     sync.Once
	keysA, keysB *sign.KeySet
	keysErr      error
	keysRoot     string
)

// keys makes two real key ceremonies once per test binary: the bundle's
// keys and a stranger's.
func keys(t testing.TB) (*sign.KeySet, *sign.KeySet) {
	t.Helper()
	keysOnce.Do(func() {
		keysRoot, keysErr = os.MkdirTemp("", "bundle-keys-")
		if keysErr != nil {
			return
		}
		if keysA, keysErr = sign.InitKeys(context.Background(), filepath.Join(keysRoot, "a"), sign.InitOptions{Cluster: "t"}); keysErr != nil {
			return
		}
		keysB, keysErr = sign.InitKeys(context.Background(), filepath.Join(keysRoot, "b"), sign.InitOptions{Cluster: "other"})
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keysA, keysB
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keysRoot != "" {
		os.RemoveAll(keysRoot)
	}
	os.Exit(code)
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fixture lays out a build directory with a signed manifest, a darksite
// directory and the node binaries the manifest names.
func fixture(t *testing.T, ks *sign.KeySet) Source {
	t.Helper()
	root := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	specB, lockB := []byte("apiVersion: kubedos.io/v1alpha1\n"), []byte("lock\n")
	kd, ini := []byte("kubedosd binary"), []byte("kubedos-init binary")
	write("bin/kubedosd", kd)
	write("bin/kubedos-init", ini)
	write("repo/dists/kubedos/InRelease", []byte("signed release"))
	write("repo/pool/main/a/a_1_amd64.deb", bytes.Repeat([]byte("deb"), 1000))
	write("repo/.repo.tmp-1/half", []byte("a fetch's leftover staging"))
	build := map[string][]byte{
		manifest.SpecFile: specB, manifest.LockFile: lockB, manifest.ProvenanceRel: []byte("{}"),
		"roles/master/sbom.cdx.json": []byte("{}"), "roles/master/cmdline.txt": []byte("roothash=x"),
		"roles/master/kubedos.efi": []byte("UKI"), "roles/master/disk.raw": make([]byte, 4096),
	}
	m := manifest.Manifest{APIVersion: "kubedos.io/v1alpha1", Kind: "BuildManifest", Cluster: "t", BuildID: "b-1234",
		SpecDigest: "sha256:" + hexSum(specB), LockDigest: "sha256:" + hexSum(lockB), Epoch: 1700000000,
		Source: manifest.Source{KubedosdSHA256: hexSum(kd), InitSHA256: hexSum(ini)}}
	for _, rel := range []string{manifest.SpecFile, manifest.LockFile, manifest.ProvenanceRel, "roles/master/cmdline.txt", "roles/master/disk.raw", "roles/master/kubedos.efi", "roles/master/sbom.cdx.json"} {
		write("out/"+rel, build[rel])
		m.Files = append(m.Files, manifest.FileEntry{Path: rel, SHA256: hexSum(build[rel]), Size: int64(len(build[rel]))})
	}
	raw, sig := signedJSON(t, ks, m)
	write("out/"+manifest.ManifestFile, raw)
	write("out/"+manifest.SignatureFile, sig)
	return Source{BuildDir: filepath.Join(root, "out"), RepoDir: filepath.Join(root, "repo"), BinDir: filepath.Join(root, "bin"), Keys: ks}
}

// signedJSON is v as JSON and its signature with the artifact key of ks.
func signedJSON(t *testing.T, ks *sign.KeySet, v any) ([]byte, []byte) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ks.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sign.SignBlob(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, sig
}

func members(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name], _ = io.ReadAll(tr)
	}
}

func TestCreateVerifyExtract(t *testing.T) {
	ks, other := keys(t)
	src := fixture(t, ks)
	out := filepath.Join(t.TempDir(), "b.tar")
	x, err := Create(context.Background(), src, out)
	if err != nil {
		t.Fatal(err)
	}
	got := members(t, out)
	for _, want := range []string{IndexName, SigName, "inputs/cluster.yaml", "inputs/kubedos.lock", "keys/" + sign.FileSigningPub,
		"keys/" + sign.FileDBCert, "keys/" + sign.FileCACert, "bin/kubedosd", "bin/kubedos-init",
		"darksite/dists/kubedos/InRelease", "darksite/pool/main/a/a_1_amd64.deb",
		"build/b-1234/manifest.json", "build/b-1234/manifest.sig", "build/b-1234/roles/master/sbom.cdx.json"} {
		if _, ok := got[want]; !ok {
			t.Errorf("bundle has no %s", want)
		}
	}
	for name, data := range got {
		if strings.HasSuffix(name, ".key") || bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s: a private key in the bundle", name)
		}
		if strings.Contains(name, "disk.raw") || strings.Contains(name, "kubedos.efi") || strings.Contains(name, ".tmp-") {
			t.Errorf("%s: not asked for", name)
		}
	}
	if len(got) != len(x.Files)+2 {
		t.Errorf("%d members, index lists %d (+2)", len(got), len(x.Files))
	}
	if _, err := Verify(context.Background(), out, ks.SigningPub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if _, err := Verify(context.Background(), out, other.SigningPub); !errors.Is(err, ErrBad) || !errors.Is(err, sign.ErrUntrusted) {
		t.Errorf("verify with another cluster's key: %v", err)
	}

	// Deterministic: the same build bundles to the same bytes.
	out2 := filepath.Join(t.TempDir(), "b.tar")
	if _, err := Create(context.Background(), src, out2); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Error("two bundles of one build differ")
	}
	if _, err := Create(context.Background(), src, out); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Errorf("second create to the same path: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Extract(context.Background(), out, dir, ks.SigningPub); err != nil {
		t.Fatal(err)
	}
	spec, repo, bins := RebuildPaths(dir)
	for p, want := range map[string]string{spec: "apiVersion: kubedos.io/v1alpha1\n", filepath.Join(repo, "dists/kubedos/InRelease"): "signed release", filepath.Join(bins, "kubedosd"): "kubedosd binary"} {
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(bins, "kubedosd")); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/kubedosd not executable: %v", err)
	}
	if _, err := Extract(context.Background(), out, dir, ks.SigningPub); err == nil {
		t.Error("extracted over an existing directory")
	}
}

func TestCreateWithImages(t *testing.T) {
	ks, _ := keys(t)
	src := fixture(t, ks)
	src.Images = true
	out := filepath.Join(t.TempDir(), "b.tar")
	x, err := Create(context.Background(), src, out)
	if err != nil {
		t.Fatal(err)
	}
	got := members(t, out)
	if _, ok := got["build/b-1234/roles/master/kubedos.efi"]; !ok || !x.Images {
		t.Error("images asked for, UKI not in the bundle")
	}
	if _, ok := got["build/b-1234/roles/master/disk.raw"]; ok {
		t.Error("disk.raw in the bundle: the qcow2 holds the same disk")
	}
}

func TestCreateRefuses(t *testing.T) {
	ks, other := keys(t)
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, src *Source)
		want   string
	}{
		{"node binary not the manifest's", func(t *testing.T, src *Source) {
			_ = os.WriteFile(filepath.Join(src.BinDir, "kubedosd"), []byte("another kubedosd"), 0o755)
		}, "kubedosd: sha256"},
		{"spec not the manifest's", func(t *testing.T, src *Source) {
			_ = os.WriteFile(filepath.Join(src.BuildDir, "inputs", "cluster.yaml"), []byte("edited"), 0o644)
		}, "cluster.yaml: sha256"},
		{"SBOM changed after the build", func(t *testing.T, src *Source) {
			_ = os.WriteFile(filepath.Join(src.BuildDir, "roles", "master", "sbom.cdx.json"), []byte("{ }"), 0o644)
		}, "sbom.cdx.json: sha256"},
		{"manifest signed by another key", func(t *testing.T, src *Source) { src.Keys = other }, "manifest.sig"},
		{"no darksite repo", func(t *testing.T, src *Source) { src.RepoDir = filepath.Join(src.RepoDir, "none") }, "darksite repo"},
		{"symlink in the repo", func(t *testing.T, src *Source) {
			_ = os.Symlink("/etc/passwd", filepath.Join(src.RepoDir, "pool", "link"))
		}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fixture(t, ks)
			tc.mutate(t, &src)
			out := filepath.Join(t.TempDir(), "b.tar")
			_, err := Create(context.Background(), src, out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// craft writes a bundle by hand, signed with key, for the reader's refusals.
type entry struct {
	name string
	data []byte
	typ  byte
}

func craft(t *testing.T, ks *sign.KeySet, idx []byte, entries []entry) string {
	t.Helper()
	key, err := ks.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sign.SignBlob(key, idx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range append([]entry{{IndexName, idx, tar.TypeReg}, {SigName, sig, tar.TypeReg}}, entries...) {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data))}
		if e.typ != tar.TypeReg {
			h.Size, h.Linkname = 0, "/etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			_, _ = tw.Write(e.data)
		}
	}
	_ = tw.Close()
	p := filepath.Join(t.TempDir(), "crafted.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func index(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	ks, _ := keys(t)
	x := Index{APIVersion: APIVersion, Kind: Kind, Cluster: "t", BuildID: "b-1", SigningKey: sign.KeyID(ks.SigningPub)}
	for _, name := range []string{"bin/kubedosd", "inputs/cluster.yaml", "inputs/kubedos.lock"} {
		if d, ok := files[name]; ok {
			x.Files = append(x.Files, manifest.FileEntry{Path: name, SHA256: hexSum(d), Size: int64(len(d))})
		}
	}
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadRefuses(t *testing.T) {
	ks, _ := keys(t)
	files := map[string][]byte{"bin/kubedosd": []byte("kd"), "inputs/cluster.yaml": []byte("spec"), "inputs/kubedos.lock": []byte("lock")}
	idx := index(t, files)
	reg := func(name string, data []byte) entry { return entry{name, data, tar.TypeReg} }
	good := []entry{reg("bin/kubedosd", files["bin/kubedosd"]), reg("inputs/cluster.yaml", files["inputs/cluster.yaml"]), reg("inputs/kubedos.lock", files["inputs/kubedos.lock"])}
	if _, err := Verify(context.Background(), craft(t, ks, idx, good), ks.SigningPub); err != nil {
		t.Fatalf("the good crafted bundle: %v", err)
	}
	for _, tc := range []struct {
		name    string
		idx     []byte
		entries []entry
		want    []string
	}{
		{"one changed byte", idx, []entry{good[0], reg("inputs/cluster.yaml", []byte("spek")), good[2]}, []string{"inputs/cluster.yaml: sha256"}},
		{"two bad members, both named", idx, []entry{reg("bin/kubedosd", []byte("k!")), good[1], reg("inputs/kubedos.lock", []byte("lick"))}, []string{"bin/kubedosd: sha256", "inputs/kubedos.lock: sha256", "2 bad member(s)"}},
		{"missing member", idx, good[:2], []string{"inputs/kubedos.lock: missing"}},
		{"member not indexed", idx, append(append([]entry{}, good...), reg("keys/extra", []byte("x"))), []string{"keys/extra: not in the signed index"}},
		{"member twice", idx, append(append([]entry{}, good...), good[1]), []string{"inputs/cluster.yaml: appears twice"}},
		{"wrong size", idx, []entry{good[0], reg("inputs/cluster.yaml", []byte("spec, longer")), good[2]}, []string{"inputs/cluster.yaml: 12 bytes"}},
		{"symlink", idx, []entry{good[0], {"inputs/cluster.yaml", nil, tar.TypeSymlink}, good[2]}, []string{"inputs/cluster.yaml: a symlink", "1 bad member(s)"}},
		{"index escapes the directory", bytes.Replace(idx, []byte(`"bin/kubedosd"`), []byte(`"../../kubedosd"`), 1), good, []string{"files[0].path"}},
		{"index naming another key", bytes.Replace(idx, []byte(`"signingKey":"sha256:`), []byte(`"signingKey":"sha256:0`), 1), good, []string{"signingKey"}},
		{"index of another kind", bytes.Replace(idx, []byte(Kind), []byte("BuildManifest"), 1), good, []string{"kind"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := craft(t, ks, tc.idx, tc.entries)
			_, err := Verify(context.Background(), p, ks.SigningPub)
			if !errors.Is(err, ErrBad) {
				t.Fatalf("error %v, want ErrBad", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			dir := filepath.Join(t.TempDir(), "x")
			if _, err := Extract(context.Background(), p, dir, ks.SigningPub); err == nil {
				t.Fatal("extracted a refused bundle")
			}
			if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 0 {
				t.Errorf("a refused extract left %v", entries)
			}
		})
	}

	// The index's signature covers it: an edited index with the old signature.
	p := craft(t, ks, idx, good)
	raw, _ := os.ReadFile(p)
	raw = bytes.Replace(raw, []byte(`"cluster":"t"`), []byte(`"cluster":"u"`), 1)
	_ = os.WriteFile(p, raw, 0o644)
	if _, err := Verify(context.Background(), p, ks.SigningPub); !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("edited index: %v, want a bad signature", err)
	}
	// Not a bundle at all.
	junk := filepath.Join(t.TempDir(), "junk")
	_ = os.WriteFile(junk, []byte("not a tar"), 0o644)
	if _, err := Verify(context.Background(), junk, ks.SigningPub); !errors.Is(err, ErrBad) {
		t.Errorf("junk: %v", err)
	}
}

func TestCheckMemberPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"inputs/cluster.yaml": true, "darksite/pool/main/a/a.deb": true, "build/b-1/roles/m/x": true,
		"kube/src/go.mod": true, "coredns/proxy/github.com/coredns/coredns/@v/v1.14.7.zip": true, "coredns": false,
		"": false, "/etc/passwd": false, "../x": false, "inputs/../../x": false, "inputs": false, "inputs/": false,
		"other/x": false, "./inputs/x": false, "inputs//x": false, `inputs\x`: false, "bundle.json": false,
	} {
		if err := checkMemberPath(p); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", p, err, ok)
		}
	}
}
