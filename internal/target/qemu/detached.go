package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/pidfile"
)

// Files of a detached VM in its directory.
const (
	qemuPidFile  = "qemu.pid"
	swtpmPidFile = "swtpm.pid"
)

// StartDetached starts a VM that outlives the calling process (a cluster
// node): swtpm and qemu daemonize and leave pid files in cfg.Dir, and Stop
// ends them. The TPM state in cfg.Dir persists across runs, so a node keeps
// its EK. A VM that is already running is left as it is.
func StartDetached(ctx context.Context, cfg VMConfig) error {
	if err := cfg.absolute(); err != nil {
		return err
	}
	if _, ok := Running(cfg.Dir); ok {
		return nil
	}
	v := &VM{cfg: cfg}
	vars, err := v.prepare(ctx)
	if err != nil {
		return err
	}
	sock := filepath.Join(v.TPMDir(), "swtpm.sock")
	_ = os.Remove(sock)
	out, err := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", v.tpmState(),
		"--ctrl", "type=unixio,path="+sock, "--terminate", "--log", "file="+filepath.Join(cfg.Dir, "swtpm.log"),
		"--daemon", "--pid", "file="+filepath.Join(cfg.Dir, swtpmPidFile)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start swtpm for %s: %w: %s", cfg.Name, err, out)
	}
	if err := waitListening(ctx, sock, 10*time.Second); err != nil {
		return fmt.Errorf("swtpm for %s: %w", cfg.Name, err)
	}
	args := append(qemuArgs(cfg, vars, sock, v.SerialLog()), "-daemonize", "-pidfile", filepath.Join(cfg.Dir, qemuPidFile))
	cmd := qemuCommand(ctx, cfg, args)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = pidfile.Stop(filepath.Join(cfg.Dir, swtpmPidFile), 5*time.Second)
		return fmt.Errorf("start qemu for %s: %w: %s", cfg.Name, err, out)
	}
	return nil
}

// Running reports whether the detached VM in dir is alive, with its pid.
func Running(dir string) (int, bool) {
	return pidfile.Alive(filepath.Join(dir, qemuPidFile))
}

// Stop ends a detached VM (qemu, then its swtpm) and removes the pid files.
// A VM that is not running is not an error.
func Stop(dir string) error {
	return errors.Join(pidfile.Stop(filepath.Join(dir, qemuPidFile), 10*time.Second), pidfile.Stop(filepath.Join(dir, swtpmPidFile), 5*time.Second))
}
