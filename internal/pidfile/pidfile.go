// Package pidfile finds and stops the detached processes of a local cluster
// (qemu, swtpm, the hub) from the pid files they leave in their directories.
//
// A pid that answers kill(pid, 0) is not enough: where PID 1 does not reap
// orphans (containers), a killed daemon stays a zombie and would look alive
// for ever, and after a host reboot the pid may belong to another program.
// A process counts as alive only when it is not a zombie and its command
// line names the pid file's directory (every daemon we start is given it).
package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Alive reports whether the process named by pidFile runs, with its pid.
func Alive(pidFile string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, running(pid, filepath.Dir(pidFile))
}

// running reports whether pid is a live (not zombie) process whose command
// line mentions dir.
func running(pid int, dir string) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces or parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	if s := stat[i+2]; s == 'Z' || s == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return strings.Contains(string(cmdline), abs)
}

// Stop sends SIGTERM to the process of pidFile, waits up to grace, then
// SIGKILL, and removes the file. A process that is not running (or a
// missing file) is not an error.
func Stop(pidFile string, grace time.Duration) error {
	pid, ok := Alive(pidFile)
	if !ok {
		return remove(pidFile)
	}
	dir := filepath.Dir(pidFile)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !running(pid, dir) {
			return remove(pidFile)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d (%s): %w", pid, pidFile, err)
	}
	for i := 0; i < 50 && running(pid, dir); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	return remove(pidFile)
}

// remove deletes a pid file; qemu removes its own on a clean exit.
func remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
