package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A cancelled build asks its tool to stop, so the tool's own cleanup
// (mmdebstrap's unmounting of the root's /proc and /sys) runs; a kill
// would skip it.
func TestCancelledToolCleansUp(t *testing.T) {
	dir := t.TempDir()
	ready, cleaned := filepath.Join(dir, "ready"), filepath.Join(dir, "cleaned")
	script := `trap 'echo unmounted > "$2"; exit 1' TERM; touch "$1"; while :; do sleep 0.05; done`
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := runTool(ctx, nil, "sh", "-c", script, "tool", ready, cleaned)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the tool did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled tool reported success")
		}
	case <-time.After(toolGrace / 2):
		t.Fatal("the cancelled tool was not stopped")
	}
	b, err := os.ReadFile(cleaned)
	if err != nil || strings.TrimSpace(string(b)) != "unmounted" {
		t.Fatalf("the tool's cleanup did not run (%q, %v): it was killed, not asked to stop", b, err)
	}
}
