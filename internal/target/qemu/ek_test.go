package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// swtpmContext skips the test without swtpm, and bounds it.
func swtpmContext(tb testing.TB) context.Context {
	tb.Helper()
	for _, tool := range []string{"swtpm", "swtpm_setup"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// TestReadEKStable: the EK read before boot is the TPM's and stays the same
// across reads (the deploy step registers it once).
func TestReadEKStable(t *testing.T) {
	ctx := swtpmContext(t)
	dir := t.TempDir()
	a, err := ReadEK(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadEK(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) < 200 || !bytes.Equal(a, b) {
		t.Fatalf("EK not stable: %d and %d bytes", len(a), len(b))
	}
	c, err := ReadEK(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Fatal("two TPMs have the same EK")
	}
}

// TestMakeTPMStateFile: a TPM made in swtpm's single-file format (Proxmox
// VE's tpmstate0) keeps the EK reported when it was made, is never made
// over, and each is a different TPM.
func TestMakeTPMStateFile(t *testing.T) {
	ctx := swtpmContext(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tpm.raw")
	ek, err := MakeTPMStateFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 1000 {
		t.Fatalf("state file %v, %v: want a private file holding the TPM", fi, err)
	}
	again, err := readEK(ctx, "backend-uri=file://"+path, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ek) < 200 || !bytes.Equal(ek, again) {
		t.Fatalf("EK read back differs: %d and %d bytes", len(ek), len(again))
	}
	if _, err := MakeTPMStateFile(ctx, path); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("made a TPM over an existing one: %v", err)
	}
	other, err := MakeTPMStateFile(ctx, filepath.Join(dir, "other.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ek, other) {
		t.Error("two TPMs have the same EK")
	}
}

// BenchmarkMakeTPMStateFile: making one Proxmox VM's TPM (swtpm_setup with
// an EK certificate, then the EK read back) — per new VM in a deploy.
func BenchmarkMakeTPMStateFile(b *testing.B) {
	ctx := swtpmContext(b)
	dir := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		if _, err := MakeTPMStateFile(ctx, filepath.Join(dir, fmt.Sprintf("tpm-%d.raw", i))); err != nil {
			b.Fatal(err)
		}
	}
}
