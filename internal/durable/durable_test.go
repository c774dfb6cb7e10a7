package durable

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, data := range []string{"one", "two, longer"} {
		if err := WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != data {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("wrote into a directory that does not exist")
	}
}

func TestCreateFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := CreateFile(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateFile(p, []byte("b"), 0o600); err == nil {
		t.Error("replaced an existing file")
	}
	if got, _ := os.ReadFile(p); string(got) != "a" {
		t.Errorf("contents %q", got)
	}
}

// A full filesystem must fail the write and keep the old file: a short
// write renamed into place is exactly the torn file this package exists to
// prevent. A tiny tmpfs is the real thing; it needs root.
func TestWriteFileFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, make([]byte, 1<<20), 0o600); err == nil {
		t.Fatal("a 1 MiB write into a 64 KiB filesystem succeeded")
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("after a failed write the file holds %d bytes, want the old contents", len(got))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// oldFileKept checks a failed replacement left the old contents and no
// temporary beside them.
func oldFileKept(t *testing.T, p, old string) {
	t.Helper()
	if got, err := os.ReadFile(p); err != nil || string(got) != old {
		t.Errorf("after a failed write %s holds %q (%v), want the old %q", p, got, err, old)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestWriteFrom(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A streamed write that fails half-way (a digest that does not match,
	// a broken download) leaves the old file.
	refused := errors.New("digest mismatch")
	err := WriteFrom(p, 0o644, func(w io.Writer) error {
		if _, err := w.Write([]byte("half of the new")); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("WriteFrom = %v, want the writer's error", err)
	}
	oldFileKept(t, p, "old")
	if err := WriteFrom(p, 0o644, func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "new" {
		t.Errorf("contents %q, want new", got)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestProduce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "image")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A tool that fails after writing part of its output leaves the old file.
	toolFailed := errors.New("mksquashfs: exit 1")
	err := Produce(p, func(tmp string) error {
		if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the temporary exists before the tool runs: %v", err)
		}
		if err := os.WriteFile(tmp, []byte("half an image"), 0o644); err != nil {
			return err
		}
		return toolFailed
	})
	if !errors.Is(err, toolFailed) {
		t.Fatalf("Produce = %v, want the tool's error", err)
	}
	oldFileKept(t, p, "old")
	// The tool's file is placed as it made it: mode and bytes untouched.
	if err := Produce(p, func(tmp string) error { return os.WriteFile(tmp, []byte("image"), 0o640) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "image" {
		t.Errorf("contents %q, want image", got)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the tool's 0640", fi.Mode().Perm())
	}
	// A tool that reports success but made nothing fails; the file stays.
	if err := Produce(p, func(string) error { return nil }); err == nil {
		t.Error("Produce succeeded although nothing was produced")
	}
	oldFileKept(t, p, "image")
}

func TestPublishDir(t *testing.T) {
	parent := t.TempDir()
	tmp, dir := filepath.Join(parent, ".out.tmp"), filepath.Join(parent, "out")
	for _, d := range []string{tmp, dir} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "sub", "f"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	// An existing, complete output is never replaced.
	if err := PublishDir(tmp, dir); err == nil {
		t.Fatal("published over a directory that holds files")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "sub", "f")); string(got) != "old" {
		t.Errorf("after a failed publish the old output holds %q", got)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := PublishDir(tmp, dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "link")); string(got) != "new" {
		t.Errorf("published %q, want new", got)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary directory is still there: %v", err)
	}
}

// TempTarget recognises the names this package's writes really use.
func TestTempTarget(t *testing.T) {
	dir := t.TempDir()
	var seen string
	err := WriteFrom(filepath.Join(dir, "revoked.json"), 0o644, func(w io.Writer) error {
		seen = w.(*os.File).Name()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := TempTarget(seen); !ok || got != filepath.Join(dir, "revoked.json") {
		t.Errorf("TempTarget(%s) = %q, %v", seen, got, ok)
	}
	for _, name := range []string{"revoked.json", ".tmp-1", "..tmp-1", ".x.tmp-", "x.tmp-1", ".x.tmp"} {
		if got, ok := TempTarget(filepath.Join(dir, name)); ok {
			t.Errorf("TempTarget(%s) = %q, want no target", name, got)
		}
	}
}
