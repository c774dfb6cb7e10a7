package pidfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// start runs sh with dir on its command line (as our daemons have) and
// writes its pid file. The child is not waited for, so once killed it stays
// a zombie: exactly what a daemon orphaned under a non-reaping PID 1 is.
func start(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60; exit 0", "sh", dir) // two commands: sh cannot exec sleep in its place
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	pf := filepath.Join(dir, "x.pid")
	if err := os.WriteFile(pf, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cmd, pf
}

func TestAlive(t *testing.T) {
	dir := t.TempDir()
	cmd, pf := start(t, dir)
	if pid, ok := Alive(pf); !ok || pid != cmd.Process.Pid {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		t.Fatalf("Alive = %d, %v; want %d, true (cmdline %q)", pid, ok, cmd.Process.Pid, b)
	}
	// The same pid recorded in a directory its command line does not name:
	// a recycled pid, not our process.
	other := filepath.Join(t.TempDir(), "y.pid")
	if err := os.WriteFile(other, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := Alive(other); ok {
		t.Error("Alive accepted a pid whose command line does not name the pid file's directory")
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped: a zombie, which kill(pid, 0) still reports as present.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := Alive(pf); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped process still counts as alive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("test premise: the zombie should still answer kill 0: %v", err)
	}
	for _, bad := range []string{"", "abc", "-4", "0"} {
		f := filepath.Join(dir, "bad.pid")
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok := Alive(f); ok {
			t.Errorf("Alive(%q) = true", bad)
		}
	}
	if _, ok := Alive(filepath.Join(dir, "missing.pid")); ok {
		t.Error("Alive of a missing file = true")
	}
}

func TestStop(t *testing.T) {
	dir := t.TempDir()
	cmd, pf := start(t, dir)
	if err := Stop(pf, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
	if running(cmd.Process.Pid, dir) {
		t.Error("process still running after Stop")
	}
	// A stale file (process gone) is removed without error.
	if err := os.WriteFile(pf, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Stop(pf, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Errorf("stale pid file left behind: %v", err)
	}
}
