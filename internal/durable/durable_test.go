package durable

import (
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
