package bundle

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goIn runs go in dir with env added (-modcacherw: t.TempDir must be able
// to remove the module cache) and fails the test on an error.
func goIn(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"GOWORK=off", "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOSUMDB=off"}, env...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}

// upstreamProxy is a file proxy holding example.com/dep v1.0.0.
func upstreamProxy(t *testing.T) string {
	t.Helper()
	proxy := t.TempDir()
	dir := filepath.Join(proxy, "example.com", "dep", "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/dep\n\ngo 1.21\n"
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for name, body := range map[string]string{"go.mod": gomod, "dep.go": "package dep\n\nconst Answer = 42\n"} {
		w, err := zw.Create("example.com/dep@v1.0.0/" + name)
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
	for ext, body := range map[string]string{".mod": gomod, ".zip": zb.String(), ".info": `{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}`} {
		write(t, filepath.Join(dir, "v1.0.0"+ext), body)
	}
	return proxy
}

// TestSourcesInBundle: with a wrapper module named (--kube-sources,
// --coredns-sources), the bundle carries its sources (go.mod, go.sum, Go
// files; nothing else) under <dir>/src and the proxy files its build reads
// under <dir>/proxy, and those members alone rebuild the same binary: an
// empty module cache, the extracted proxy as the only GOPROXY, go.sum
// checking. The proxy's completeness for a real module graph is modproxy's
// test; CoreDNS's own offline rebuild is TestCoreDNSRebuildFromBundle.
func TestSourcesInBundle(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx := context.Background()
	for _, dir := range []string{DirKube, DirCoreDNS} {
		t.Run(dir, func(t *testing.T) {
			upstream := upstreamProxy(t)
			modcache := t.TempDir()
			env := []string{"GOMODCACHE=" + modcache, "GOPROXY=file://" + upstream, "GOFLAGS=-mod=mod -modcacherw"}
			mod := t.TempDir()
			for name, body := range map[string]string{
				"go.mod":                     "module example.com/wrap\n\ngo 1.21\n\nrequire example.com/dep v1.0.0\n",
				"cmd/" + dir + "/main.go":    "package main\n\nimport \"example.com/dep\"\n\nfunc main() { println(dep.Answer) }\n",
				"notes.txt":                  "not a source",
				"cmd/" + dir + "/README.txt": "not a source either",
			} {
				if err := os.MkdirAll(filepath.Join(mod, filepath.Dir(name)), 0o755); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(mod, name), body)
			}
			goIn(t, mod, env, "mod", "tidy")
			bin := filepath.Join(t.TempDir(), dir)
			goIn(t, mod, env, "build", "-trimpath", "-o", bin, "./cmd/"+dir)
			built, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}

			ks, _ := keys(t)
			var src Source
			if dir == DirKube {
				src, _, _ = kubeFixtureWith(t, ks, built, built, []byte("coredns binary"))
				src.KubeModule = mod
			} else {
				src, _, _ = kubeFixtureWith(t, ks, []byte("kube multicall binary"), []byte("kube multicall binary"), built)
				src.CoreDNSModule = mod
			}
			t.Setenv("GOMODCACHE", modcache) // modproxy.Files reads this machine's module cache
			out := filepath.Join(t.TempDir(), "b.tar")
			if _, err := Create(ctx, src, out); err != nil {
				t.Fatal(err)
			}
			got := members(t, out)
			var names []string
			for _, k := range keysOf(got) {
				if strings.HasPrefix(k, DirKube+"/") || strings.HasPrefix(k, DirCoreDNS+"/") {
					names = append(names, k)
				}
			}
			want := []string{dir + "/src/go.mod", dir + "/src/go.sum", dir + "/src/cmd/" + dir + "/main.go",
				dir + "/proxy/example.com/dep/@v/v1.0.0.mod", dir + "/proxy/example.com/dep/@v/v1.0.0.zip"}
			for _, w := range want {
				if got[w] == nil {
					t.Errorf("no member %s in %v", w, names)
				}
			}
			for _, n := range names {
				if !strings.HasPrefix(n, dir+"/") || strings.HasSuffix(n, ".txt") {
					t.Errorf("member %s: not a source of %s", n, dir)
				}
			}

			// The offline rebuild from the extracted members alone.
			dest := filepath.Join(t.TempDir(), "restore")
			if _, err := Extract(ctx, out, dest, ks.SigningPub); err != nil {
				t.Fatal(err)
			}
			again := filepath.Join(t.TempDir(), dir)
			goIn(t, filepath.Join(dest, dir, "src"), []string{"GOMODCACHE=" + t.TempDir(), "GOPROXY=file://" + filepath.Join(dest, dir, "proxy"),
				"GOFLAGS=-mod=readonly -modcacherw"}, "build", "-trimpath", "-o", again, "./cmd/"+dir)
			rebuilt, err := os.ReadFile(again)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(rebuilt) != sha256.Sum256(built) {
				t.Error("the offline rebuild from the bundle differs from the binary the build was made with")
			}

			// A wrapper module that is not there is named.
			if dir == DirKube {
				src.KubeModule = filepath.Join(mod, "nope")
			} else {
				src.CoreDNSModule = filepath.Join(mod, "nope")
			}
			if _, err := Create(ctx, src, filepath.Join(t.TempDir(), "b.tar")); err == nil || !strings.Contains(err.Error(), "binary's module sources") {
				t.Errorf("a wrapper module that is not there: %v", err)
			}
		})
	}
}

// TestSourcesOfAbsentBinary: sources asked for a binary the build does
// not carry are refused, not silently left out.
func TestSourcesOfAbsentBinary(t *testing.T) {
	ks, _ := keys(t)
	for _, set := range []func(*Source){
		func(s *Source) { s.KubeModule = t.TempDir() },
		func(s *Source) { s.CoreDNSModule = t.TempDir() },
	} {
		src := fixture(t, ks) // no Kubernetes in its provenance
		set(&src)
		out := filepath.Join(t.TempDir(), "b.tar")
		if _, err := Create(context.Background(), src, out); err == nil || !strings.Contains(err.Error(), "carries no") {
			t.Errorf("Create: %v, want a refusal", err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("a refused bundle was written")
		}
	}
}
