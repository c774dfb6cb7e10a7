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
	sock, ctrl := filepath.Join(v.TPMDir(), "ek.sock"), filepath.Join(v.TPMDir(), "ek.ctrl")
	_ = os.Remove(sock)
	_ = os.Remove(ctrl)
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", "dir="+v.TPMDir(),
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+ctrl, "--flags", "startup-clear")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("swtpm for %s: %w", dir, err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); os.Remove(sock); os.Remove(ctrl) }()
	conn, err := dialSocket(ctx, sock, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("swtpm for %s: %w", dir, err)
	}
	p, err := attest.NewProver(conn, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer p.Close()
	return p.EKPublic()
}
