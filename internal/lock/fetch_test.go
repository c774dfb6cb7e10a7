package lock

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// server serves a directory over HTTP on loopback and counts requests per path.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
	// tamper, when set, replaces the body served for a path.
	tamper map[string][]byte
}

func newServer(t *testing.T, dir string) *server {
	s := &server{hits: map[string]int{}, tamper: map[string][]byte{}}
	files := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		body, bad := s.tamper[r.URL.Path]
		s.mu.Unlock()
		if bad {
			w.Write(body)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.hits {
		n += h
	}
	return n
}

func smallDebs() []fakeDeb {
	return []fakeDeb{{Name: "alpha"}, {Name: "bravo", Arch: "all", Priority: "required", Essential: true}, {Name: "charlie", Depends: "alpha"}}
}

func fetchOpts(t *testing.T, dir string) FetchOptions {
	return FetchOptions{CacheDir: filepath.Join(dir, "cache"), RepoDir: filepath.Join(dir, "repo"),
		KeyFile: writeTestKey(t, dir), Parallel: 2}
}

func TestFetchBuildsVerifiedRepo(t *testing.T) {
	src, l := fixtureArchive(t, smallDebs(), map[string]string{"alpha": "important"})
	srv := newServer(t, src)
	l.Mirror = srv.URL
	dir := t.TempDir()
	opts := fetchOpts(t, dir)
	var mu sync.Mutex
	var progress []Progress
	opts.Progress = func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }
	repo, err := Fetch(context.Background(), l, opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(progress) != 3 || progress[2].Done != 3 || progress[2].Total != 3 || progress[2].DoneBytes != progress[2].TotalBytes {
		t.Errorf("progress = %+v", progress)
	}
	for _, p := range l.Packages {
		if _, err := os.Stat(filepath.Join(opts.CacheDir, "sha256", p.SHA256+".deb")); err != nil {
			t.Errorf("cache: %v", err)
		}
		if _, err := os.Stat(filepath.Join(repo.Dir, p.Filename)); err != nil {
			t.Errorf("pool: %v", err)
		}
	}
	index, err := os.ReadFile(filepath.Join(repo.Dir, "dists/kubedos/main/binary-amd64/Packages"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Package: alpha\n", "Priority: important\n", // the archive override, not the control file's optional
		"Filename: " + l.Packages[0].Filename + "\n", "SHA256: " + l.Packages[0].SHA256 + "\n",
		"Description: kubedos test package alpha\n a tiny package for tests.\n .\n It has a long description.\n",
		"Essential: yes\n", "Depends: alpha\n",
	} {
		if !strings.Contains(string(index), want) {
			t.Errorf("Packages lacks %q:\n%s", want, index)
		}
	}
	if a, b, c := strings.Index(string(index), "Package: alpha"), strings.Index(string(index), "Package: bravo"),
		strings.Index(string(index), "Package: charlie"); a > b || b > c {
		t.Errorf("Packages stanzas not sorted by name")
	}
	checkSignatures(t, repo)
}

// checkSignatures verifies InRelease and Release.gpg against the exported
// keyring with go-crypto and, as an independent oracle, with gpgv.
func checkSignatures(t *testing.T, repo *Repo) {
	t.Helper()
	dists := filepath.Join(repo.Dir, "dists", RepoSuite)
	keyring, err := os.ReadFile(repo.Keyring)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := openpgp.ReadKeyRing(bytes.NewReader(keyring))
	if err != nil {
		t.Fatalf("keyring: %v", err)
	}
	in, _ := os.ReadFile(filepath.Join(dists, "InRelease"))
	rel, _ := os.ReadFile(filepath.Join(dists, "Release"))
	b, _ := clearsign.Decode(in)
	if b == nil {
		t.Fatal("InRelease is not clear-signed")
	}
	if _, err := b.VerifySignature(kr, nil); err != nil {
		t.Errorf("InRelease signature: %v", err)
	}
	if !bytes.Equal(bytes.TrimRight(b.Plaintext, "\n"), bytes.TrimRight(rel, "\n")) {
		t.Errorf("InRelease text differs from Release")
	}
	if !strings.Contains(string(rel), "Date: Tue, 14 Nov 2023 22:13:20 UTC\n") {
		t.Errorf("Release Date is not SourceDateEpoch:\n%s", rel)
	}
	if _, err := exec.LookPath("gpgv"); err != nil {
		return
	}
	for _, args := range [][]string{{filepath.Join(dists, "InRelease")}, {filepath.Join(dists, "Release.gpg"), filepath.Join(dists, "Release")}} {
		cmd := exec.Command("gpgv", append([]string{"--keyring", repo.Keyring}, args...)...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("gpgv %v: %v\n%s", args, err, out)
		}
	}
}

func TestFetchDigestMismatch(t *testing.T) {
	tests := []struct {
		name string
		body func(real []byte) []byte
		want string
	}{
		{"different content", func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-1] ^= 0xff; return c }, "got sha256"},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "bytes, locked"},
		{"oversized", func(b []byte) []byte { return append(bytes.Clone(b), make([]byte, 1<<20)...) }, "bytes, locked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, l := fixtureArchive(t, smallDebs(), nil)
			srv := newServer(t, src)
			l.Mirror = srv.URL
			p, _ := l.Package("bravo")
			real, err := os.ReadFile(filepath.Join(src, p.Filename))
			if err != nil {
				t.Fatal(err)
			}
			srv.tamper["/"+p.Filename] = tt.body(real)
			dir := t.TempDir()
			opts := fetchOpts(t, dir)
			_, err = Fetch(context.Background(), l, opts)
			if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "package bravo") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Fetch = %v, want ErrDigestMismatch naming bravo and %q", err, tt.want)
			}
			entries, _ := os.ReadDir(filepath.Join(opts.CacheDir, "sha256"))
			for _, e := range entries {
				if e.Name() == p.SHA256+".deb" || strings.HasPrefix(e.Name(), ".") {
					t.Errorf("unverified file left in the cache: %s", e.Name())
				}
			}
			if _, err := os.Stat(opts.RepoDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed fetch made a repo: %v", err)
			}
		})
	}
}

func TestFetchHTTPErrorNamesPackage(t *testing.T) {
	src, l := fixtureArchive(t, smallDebs(), nil)
	srv := newServer(t, src)
	l.Mirror = srv.URL
	p, _ := l.Package("charlie")
	if err := os.Remove(filepath.Join(src, p.Filename)); err != nil {
		t.Fatal(err)
	}
	_, err := Fetch(context.Background(), l, fetchOpts(t, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "package charlie") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Fetch = %v, want a 404 naming charlie", err)
	}
}

func TestFetchCacheReverified(t *testing.T) {
	src, l := fixtureArchive(t, smallDebs(), nil)
	srv := newServer(t, src)
	l.Mirror = srv.URL
	dir := t.TempDir()
	opts := fetchOpts(t, dir)
	first, err := Fetch(context.Background(), l, opts)
	if err != nil {
		t.Fatal(err)
	}
	inRelease1, _ := os.ReadFile(filepath.Join(first.Dir, "dists", RepoSuite, "InRelease"))
	if srv.total() != 3 {
		t.Fatalf("cold fetch made %d requests, want 3", srv.total())
	}

	var cached atomic.Int32
	opts.Progress = func(p Progress) {
		if p.Cached {
			cached.Add(1)
		}
	}
	second, err := Fetch(context.Background(), l, opts)
	if err != nil {
		t.Fatal(err)
	}
	if srv.total() != 3 || cached.Load() != 3 {
		t.Errorf("warm fetch: %d requests in all, %d cached; want no new request and 3 cached", srv.total(), cached.Load())
	}
	inRelease2, _ := os.ReadFile(filepath.Join(second.Dir, "dists", RepoSuite, "InRelease"))
	if !bytes.Equal(inRelease1, inRelease2) {
		t.Errorf("the same lock made a different repo")
	}

	// A rotten cache file is detected, replaced from the mirror, and only that one.
	p, _ := l.Package("alpha")
	cachePath := filepath.Join(opts.CacheDir, "sha256", p.SHA256+".deb")
	if err := os.Remove(filepath.Join(first.Dir, p.Filename)); err != nil { // break the hard link, keep the pool intact
		t.Fatal(err)
	}
	if err := os.WriteFile(cachePath, []byte("rotten"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(context.Background(), l, opts); err != nil {
		t.Fatal(err)
	}
	if srv.hits["/"+p.Filename] != 2 || srv.total() != 4 {
		t.Errorf("after corrupting alpha: hits %v, want alpha fetched again and nothing else", srv.hits)
	}
	if f, err := os.Open(cachePath); err != nil || verify(f, p) != nil {
		t.Errorf("cache file for alpha not repaired: %v", err)
	}
}

func TestFetchFromFileMirror(t *testing.T) {
	src, l := fixtureArchive(t, smallDebs(), nil)
	l.Mirror = "file://" + src
	if _, err := Fetch(context.Background(), l, fetchOpts(t, t.TempDir())); err != nil {
		t.Fatalf("Fetch from a file:// mirror: %v", err)
	}
}

func TestFetchRejectsLockThatLies(t *testing.T) {
	// The right bytes under a wrong name: the digest matches, the control file does not.
	src, l := fixtureArchive(t, smallDebs(), nil)
	l.Mirror = "file://" + src
	l.Packages[0].Version = "9.9-9"
	_, err := Fetch(context.Background(), l, fetchOpts(t, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), `the lock says "9.9-9"`) {
		t.Fatalf("Fetch = %v, want the control-file mismatch", err)
	}
}

func TestFetchKeyErrors(t *testing.T) {
	_, l := fixtureArchive(t, smallDebs()[:1], nil)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	for _, key := range []string{bad, filepath.Join(dir, "missing.key")} {
		_, err := Fetch(context.Background(), l, FetchOptions{CacheDir: dir, RepoDir: dir + "/r", KeyFile: key})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Fetch with key %s = %v, want an error naming it", key, err)
		}
	}
}
