package qemu

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestReadEKStable: the EK read before boot is the TPM's and stays the same
// across reads (the deploy step registers it once).
func TestReadEKStable(t *testing.T) {
	for _, tool := range []string{"swtpm", "swtpm_setup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
