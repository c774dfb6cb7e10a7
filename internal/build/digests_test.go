package build

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubedos/kubedos/internal/manifest"
)

// The manifest takes a role file's digest from the role cache's record
// and reads only the files the record does not cover.
func TestListFilesTakesRecordedDigests(t *testing.T) {
	dir := t.TempDir()
	role := filepath.Join(dir, "roles", "worker")
	if err := os.MkdirAll(role, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{FileDiskRaw: "disk bytes", FileCmdline: "console=ttyS0\n"} {
		if err := os.WriteFile(filepath.Join(role, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte("spec"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := digestFiles(role, []string{FileDiskRaw})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 1 || rec[0].Path != FileDiskRaw || rec[0].Size != int64(len("disk bytes")) || rec[0].SHA256 != sha256Hex([]byte("disk bytes")) {
		t.Fatalf("digestFiles = %+v", rec)
	}
	// A recorded digest that differs from the file shows the file was not read again.
	raw := manifest.RoleFile("worker", FileDiskRaw)
	known := map[string]manifest.FileEntry{raw: {Path: raw, SHA256: "recorded", Size: 10},
		"roles/worker/absent": {Path: "roles/worker/absent", SHA256: "x", Size: 1}}
	got, err := listFiles(dir, known)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{raw: "recorded", manifest.RoleFile("worker", FileCmdline): sha256Hex([]byte("console=ttyS0\n")), "spec.yaml": sha256Hex([]byte("spec"))}
	if len(got) != len(want) {
		t.Fatalf("listFiles = %+v, want the %d files present", got, len(want))
	}
	for _, e := range got {
		if want[e.Path] != e.SHA256 {
			t.Errorf("%s: sha256 %s, want %s", e.Path, e.SHA256, want[e.Path])
		}
	}
	if _, err := digestFiles(role, []string{"missing"}); err == nil {
		t.Error("digestFiles of a missing file: no error")
	}
}
