package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/attest"
)

// ReadEK returns the EK public key (PKIX DER) of the VM's TPM in dir, making
// the TPM first if needed, without booting the VM: the deploy step registers
// it with the hub so only this machine can enroll under its name.
func ReadEK(ctx context.Context, dir string) ([]byte, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	v := &VM{cfg: VMConfig{Name: filepath.Base(dir), Dir: dir}}
	if err := os.MkdirAll(v.TPMDir(), 0o700); err != nil {
		return nil, err
	}
	if err := v.setupTPM(ctx); err != nil {
		return nil, err
	}
	return readEK(ctx, "dir="+v.TPMDir(), v.TPMDir())
}

// MakeTPMStateFile makes a fresh TPM 2.0 in swtpm's single-file state
// format at path (what Proxmox VE keeps in a VM's tpmstate0 volume), with an
// EK certificate from swtpm's local CA, and returns its EK public key (PKIX
// DER). path must not exist: a TPM is made once, never overwritten.
func MakeTPMStateFile(ctx context.Context, path string) ([]byte, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("TPM state: %w", err)
	}
	f.Close()
	out, err := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", "file://"+path,
		"--createek", "--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--overwrite").CombinedOutput()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("swtpm_setup for %s: %w: %s", path, err, out)
	}
	// swtpm writes the file anew with its own mode (0640); it holds the
	// TPM's seeds.
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	return readEK(ctx, "backend-uri=file://"+path, filepath.Dir(path))
}

// readEK starts swtpm on a TPM's state (a --tpmstate argument) and reads
// its EK; the sockets live in sockDir while it runs.
func readEK(ctx context.Context, state, sockDir string) ([]byte, error) {
	sock, ctrl := filepath.Join(sockDir, "ek.sock"), filepath.Join(sockDir, "ek.ctrl")
	_ = os.Remove(sock)
	_ = os.Remove(ctrl)
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", state,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+ctrl, "--flags", "startup-clear")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("swtpm for %s: %w", state, err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); os.Remove(sock); os.Remove(ctrl) }()
	conn, err := dialSocket(ctx, sock, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("swtpm for %s: %w", state, err)
	}
	p, err := attest.NewProver(conn, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer p.Close()
	return p.EKPublic()
}
