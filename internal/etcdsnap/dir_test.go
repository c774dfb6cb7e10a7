package etcdsnap

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestDir: List remembers digests by name, size and modification time;
// Check reads the file afresh; names outside the pattern, links and
// missing files are refused without a lookup outside the directory.
func TestDir(t *testing.T) {
	dir := t.TempDir()
	d := NewDir(filepath.Join(dir, "snaps"))
	if got, err := d.List(); err != nil || len(got) != 0 {
		t.Fatalf("a directory not made yet: %+v %v", got, err)
	}
	if err := os.Mkdir(d.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	older, newer := "etcd-20261206T150000Z-cp-1.db", "etcd-20261206T160000Z-cp-2.db"
	write := func(name string, b []byte, mod time.Time) {
		t.Helper()
		p := filepath.Join(d.Path(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	mod := time.Date(2026, 12, 6, 16, 0, 1, 0, time.UTC)
	write(older, []byte("first"), mod)
	write(newer, []byte("second"), mod)
	write("notes.txt", []byte("ignored"), mod)
	if err := os.Symlink(filepath.Join(d.Path(), older), filepath.Join(d.Path(), "etcd-20261206T170000Z-cp-3.db")); err != nil {
		t.Fatal(err)
	}
	got, err := d.List()
	if err != nil || len(got) != 2 || got[0].Name != newer || got[0].Member != "cp-2" || got[0].Bytes != 6 || got[0].SHA256 != sum([]byte("second")) ||
		!got[0].Taken.Equal(time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)) || got[1].Name != older {
		t.Fatalf("listed %+v %v, want the two snapshots, newest first, the link and other files left out", got, err)
	}

	// Same size and time: the remembered digest. Check reads the bytes.
	write(newer, []byte("SECOND"), mod)
	if got, _ := d.List(); got[0].SHA256 != sum([]byte("second")) {
		t.Errorf("listing again hashed an unchanged file: %s", got[0].SHA256)
	}
	if s, err := d.Check(newer); err != nil || s.SHA256 != sum([]byte("SECOND")) || s.Member != "cp-2" {
		t.Errorf("check: %+v %v, want the file's digest now", s, err)
	}
	// Another size: hashed again.
	write(older, []byte("first, again"), mod)
	if got, _ := d.List(); got[1].SHA256 != sum([]byte("first, again")) || got[1].Bytes != 12 {
		t.Errorf("a changed file listed as %+v", got[1])
	}

	for _, name := range []string{"../snaps/" + newer, "etcd-20261206T160000Z-cp-2.db/..", "etcd-2026-cp-2.db", "", "etcd-20261206T160000Z-CP.db"} {
		if _, err := d.Check(name); !errors.Is(err, ErrBadName) {
			t.Errorf("check %q: %v, want ErrBadName", name, err)
		}
	}
	if _, err := d.Check("etcd-20261206T140000Z-cp-1.db"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a snapshot not kept: %v, want ErrNotExist", err)
	}
	if _, err := d.Check("etcd-20261206T170000Z-cp-3.db"); err == nil {
		t.Error("a link was checked as a snapshot")
	}
	// Open: the digest of the bytes it hands out, from the start, even
	// when the file is replaced (renamed over) meanwhile.
	s, f, err := d.Open(newer)
	if err != nil || s.SHA256 != sum([]byte("SECOND")) {
		t.Fatalf("open: %+v %v", s, err)
	}
	write("next.tmp", []byte("third!"), mod)
	if err := os.Rename(filepath.Join(d.Path(), "next.tmp"), filepath.Join(d.Path(), newer)); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != "SECOND" {
		t.Errorf("open read %q %v, want the bytes hashed", b, err)
	}
	f.Close()
	for _, name := range []string{"../snaps/" + newer, "etcd-20261206T140000Z-cp-1.db", "etcd-20261206T170000Z-cp-3.db"} {
		if _, f, err := d.Open(name); err == nil || f != nil {
			t.Errorf("open %q: no error", name)
		}
	}
	// Files that are not etcd's bbolt: revision unknown, and left as they
	// are (bbolt would initialise an empty file it could write).
	for _, name := range []string{newer, "etcd-20261206T180000Z-cp-1.db"} {
		b, _ := os.ReadFile(filepath.Join(d.Path(), name))
		write(name, b, mod.Add(time.Minute))
	}
	got, _ = d.List()
	if fi, err := os.Stat(filepath.Join(d.Path(), "etcd-20261206T180000Z-cp-1.db")); err != nil || fi.Size() != 0 || got[0].Revision != 0 || got[1].Revision != 0 {
		t.Errorf("an empty and a foreign file: %+v, %v %v", got, fi, err)
	}
	if err := os.Remove(filepath.Join(d.Path(), "etcd-20261206T180000Z-cp-1.db")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d.Path(), older)); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.List(); len(got) != 1 || len(d.sums) != 1 {
		t.Errorf("after a prune: listed %+v, %d digests remembered", got, len(d.sums))
	}
}
