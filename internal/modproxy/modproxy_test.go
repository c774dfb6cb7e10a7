package modproxy

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// proxyModule writes module path@version into a file proxy tree: its
// go.mod, .info and source zip holding files.
func proxyModule(t *testing.T, proxy, modPath, version, gomod string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(proxy, Escape(modPath), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files["go.mod"] = gomod
	zb := zipOf(t, modPath+"@"+version+"/", files)
	for ext, body := range map[string][]byte{".mod": []byte(gomod), ".zip": zb, ".info": []byte(`{"Version":"` + version + `","Time":"2026-01-01T00:00:00Z"}`)} {
		if err := os.WriteFile(filepath.Join(dir, version+ext), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// zipOf is a module zip of files, each named prefix+name.
func zipOf(t *testing.T, prefix string, files map[string]string) []byte {
	t.Helper()
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for name, body := range files {
		w, err := zw.Create(prefix + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zb.Bytes()
}

// goCmd runs go in dir with a module cache and proxy of the test's own.
func goCmd(t *testing.T, dir, modcache, proxy string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOMODCACHE="+modcache, "GOPROXY=file://"+proxy, "GOSUMDB=off", "GOFLAGS=-mod=mod",
		"GOWORK=off", "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestOfflineRebuild: the proxy files Files lists rebuild the binary with
// no other source — an empty module cache, only that proxy, go.sum
// checking — to the same bytes. A module the graph reaches without
// linking it at that version (other v1.0.0, which Dep requires) is left
// out: graph pruning never reads it, so the module cache lacks it. Files
// changed in the module cache are refused.
func TestOfflineRebuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root := t.TempDir()
	upstream := filepath.Join(root, "upstream")
	proxyModule(t, upstream, "example.com/Dep", "v1.2.0", "module example.com/Dep\n\ngo 1.21\n\nrequire example.com/other v1.0.0\n",
		map[string]string{"dep.go": "package dep\n\nfunc Answer() int { return 42 }\n"})
	proxyModule(t, upstream, "example.com/other", "v1.0.0", "module example.com/other\n\ngo 1.21\n", map[string]string{"other.go": "package other\n"})
	proxyModule(t, upstream, "example.com/other", "v1.1.0", "module example.com/other\n\ngo 1.21\n", map[string]string{"other.go": "package other\n"})
	main := filepath.Join(root, "wrap")
	if err := os.MkdirAll(main, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"go.mod":  "module example.com/wrap\n\ngo 1.21\n\nrequire (\n\texample.com/Dep v1.2.0\n\texample.com/other v1.1.0\n)\n",
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\n\tdep \"example.com/Dep\"\n\t_ \"example.com/other\"\n)\n\nfunc main() { fmt.Println(dep.Answer()) }\n",
	} {
		if err := os.WriteFile(filepath.Join(main, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modcache := filepath.Join(root, "modcache")
	goCmd(t, main, modcache, upstream, "mod", "tidy")
	goCmd(t, main, modcache, upstream, "build", "-trimpath", "-o", filepath.Join(root, "wrap.bin"), ".")

	t.Setenv("GOMODCACHE", modcache)
	files, err := Files(context.Background(), main, filepath.Join(root, "wrap.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, f := range files {
		rels = append(rels, f.Rel)
	}
	got := strings.Join(rels, " ")
	for _, want := range []string{"example.com/!dep/@v/v1.2.0.zip", "example.com/!dep/@v/v1.2.0.mod", "example.com/other/@v/v1.1.0.mod", "example.com/other/@v/v1.1.0.zip"} {
		if !strings.Contains(got, want) {
			t.Errorf("files %s: no %s", got, want)
		}
	}
	// Dep requires other v1.0.0, pruned: its go.mod was never read.
	if strings.Contains(got, "other/@v/v1.0.0") {
		t.Errorf("files %s: a module version the build never read", got)
	}

	// The offline rebuild: only the listed files, a fresh module cache.
	offline := filepath.Join(root, "offline")
	for _, f := range files {
		b, err := os.ReadFile(f.Src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(offline, filepath.FromSlash(f.Rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(root, "again.bin"), ".")
	cmd.Dir = main
	cmd.Env = append(os.Environ(), "GOMODCACHE="+filepath.Join(root, "modcache2"), "GOPROXY=file://"+offline, "GOSUMDB=off",
		"GOFLAGS=-mod=readonly", "GOWORK=off", "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("offline build from the listed files: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(filepath.Join(root, "wrap.bin"))
	b, _ := os.ReadFile(filepath.Join(root, "again.bin"))
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Error("the offline rebuild differs")
	}

	// Only files with a digest to check are listed: no .info.
	if strings.Contains(got, ".info") {
		t.Errorf("files %s: an .info file, which nothing checks", got)
	}

	// A module cache whose files changed since the build: a zip that is
	// not what the binary links, a go.mod that is not go.sum's. Each is
	// refused, naming it.
	dl := filepath.Join(modcache, "cache", "download", "example.com", "!dep", "@v")
	for _, tc := range []struct{ file, want string }{
		{"v1.2.0.zip", "example.com/Dep@v1.2.0.zip"},
		{"v1.2.0.mod", "example.com/Dep@v1.2.0.mod"},
	} {
		p := filepath.Join(dl, tc.file)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tampered := bytes.Replace(orig, []byte("go 1.21"), []byte("go 1.22"), 1)
		if tc.file == "v1.2.0.zip" {
			tampered = zipOf(t, "example.com/Dep@v1.2.0/", map[string]string{"go.mod": "module example.com/Dep\n", "dep.go": "package dep\n\nfunc Answer() int { return 43 }\n"})
		}
		if bytes.Equal(tampered, orig) {
			t.Fatalf("%s: nothing to change", p)
		}
		if err := os.WriteFile(p, tampered, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Files(context.Background(), main, filepath.Join(root, "wrap.bin"))
		if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s changed in the module cache: %v, want an error naming %s", tc.file, err, tc.want)
		}
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Files(context.Background(), main, filepath.Join(root, "wrap.bin")); err != nil {
		t.Fatalf("the module cache restored: %v", err)
	}

	// A module cache without a needed zip: refused, naming it.
	if err := os.Remove(filepath.Join(modcache, "cache", "download", "example.com", "other", "@v", "v1.1.0.zip")); err != nil {
		t.Fatal(err)
	}
	if _, err := Files(context.Background(), main, filepath.Join(root, "wrap.bin")); !errors.Is(err, ErrMissing) {
		t.Errorf("a missing file: %v", err)
	}
}

func TestEscape(t *testing.T) {
	if got := Escape("github.com/Azure/go-ansiterm"); got != "github.com/!azure/go-ansiterm" {
		t.Fatalf("Escape = %s", got)
	}
}
