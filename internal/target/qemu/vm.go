// Package qemu runs kubedos nodes as local virtual machines: q35 under TCG
// (or KVM when present), OVMF with the platform's keys and Secure Boot
// enforced, and one swtpm TPM 2.0 per VM.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Firmware files of Debian's ovmf package.
const (
	OVMFCode      = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsBlank = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VMConfig describes one VM. Dir holds its state: VARS copy, swtpm state,
// serial log. Paths are made absolute: swtpm needs that.
type VMConfig struct {
	Name      string
	Dir       string
	Disk      string // raw or qcow2 image; used as is (the caller copies or overlays)
	Vars      []byte // OVMF VARS image with keys enrolled (written once to Dir)
	MemoryMiB int
	CPUs      int
	// SMBIOS identity, so a node's identity is deterministic from the spec.
	Serial, UUID string
	// SKU is the SMBIOS type 1 SKU Number (where Proxmox VE puts a
	// node's kubedos.* pairs).
	SKU string
	// TPMStateFile, when set, is the TPM: swtpm's single-file state made
	// beforehand (MakeTPMStateFile), as Proxmox VE keeps it, instead of
	// a state directory in Dir.
	TPMStateFile string
	// OEMStrings go into SMBIOS type 11 (kubedos.name=…, kubedos.hub=…):
	// per-machine settings that are not part of the measured boot.
	OEMStrings []string
	// GuestFwd, when set, gives the VM one NIC on an isolated user-mode
	// network (restrict=on: no route anywhere) whose only reachable
	// addresses are these forwards to the host.
	GuestFwd []Forward
	// HostFwd adds forwards from the host into the VM on that NIC, e.g.
	// "tcp:127.0.0.1:17444-:7444" for the node API.
	HostFwd []string
	// TAP, instead of GuestFwd, puts the VM's one NIC on a Segment.
	TAP *TAP
	// Reboot lets a guest reboot (upgrades do); otherwise a reboot or a
	// panic ends the VM, which is what a one-shot boot check wants.
	Reboot bool
	// ConsoleSocket, when set, is a unix socket (QEMU listens) on a
	// virtio-serial port named org.kubedos.console (nodeconsole.PortName,
	// not imported: the target ranks below the agent's packages), where
	// kubedosd draws a read-only copy of the node console.
	ConsoleSocket string
}

// VM is a running (or stopped) machine.
type VM struct {
	cfg     VMConfig
	qemu    *exec.Cmd
	swtpm   *exec.Cmd
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
}

// SerialLog is the path of the VM's console log.
func (v *VM) SerialLog() string { return filepath.Join(v.cfg.Dir, "serial.log") }

// TPMDir is the VM's swtpm state directory (it keeps the EK across runs).
func (v *VM) TPMDir() string { return filepath.Join(v.cfg.Dir, "tpm") }

// Start prepares the VM's TPM (once) and starts swtpm and qemu. The VM runs
// until it powers off, Stop is called, or ctx ends.
func Start(ctx context.Context, cfg VMConfig) (*VM, error) {
	if err := cfg.absolute(); err != nil {
		return nil, err
	}
	v := &VM{cfg: cfg, done: make(chan struct{})}
	vars, err := v.prepare(ctx)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(v.TPMDir(), "swtpm.sock")
	_ = os.Remove(sock)
	// swtpm in socket mode ends when its client disconnects: one per VM run.
	v.swtpm = exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", v.tpmState(),
		"--ctrl", "type=unixio,path="+sock, "--terminate", "--log", "file="+filepath.Join(cfg.Dir, "swtpm.log"))
	if err := v.swtpm.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm for %s: %w", cfg.Name, err)
	}
	if err := waitListening(ctx, sock, 10*time.Second); err != nil {
		_ = v.swtpm.Process.Kill()
		return nil, fmt.Errorf("swtpm for %s: %w", cfg.Name, err)
	}
	_ = os.Remove(v.SerialLog())
	args := qemuArgs(cfg, vars, sock, v.SerialLog())
	v.qemu = qemuCommand(ctx, cfg, args)
	qlog, err := os.Create(filepath.Join(cfg.Dir, "qemu.log"))
	if err != nil {
		return nil, err
	}
	v.qemu.Stdout, v.qemu.Stderr = qlog, qlog
	if err := v.qemu.Start(); err != nil {
		qlog.Close()
		_ = v.swtpm.Process.Kill()
		return nil, fmt.Errorf("start qemu for %s: %w", cfg.Name, err)
	}
	go func() {
		err := v.qemu.Wait()
		qlog.Close()
		_ = v.swtpm.Wait() // --terminate: swtpm exits once qemu disconnects
		v.mu.Lock()
		v.waitErr = err
		v.mu.Unlock()
		close(v.done)
	}()
	return v, nil
}

// Forward sends the guest's TCP connections to Guest (ip:port) to Host
// (ip:port on the host). Each connection runs its own socat: QEMU's plain
// tcp: chardev forward carries only the first connection.
type Forward struct{ Guest, Host string }

func (f Forward) netdevOption() string {
	return "guestfwd=tcp:" + f.Guest + "-cmd:socat STDIO TCP:" + f.Host
}

// qemuArgs is the machine: q35 with SMM, OVMF secboot code and the VM's own
// VARS, the disk as first boot option, one swtpm TPM 2.0, serial to a file.
func qemuArgs(cfg VMConfig, vars, sock, serial string) []string {
	format := "raw"
	if filepath.Ext(cfg.Disk) == ".qcow2" {
		format = "qcow2"
	}
	args := []string{
		"-name", cfg.Name, "-machine", "q35,smm=on", "-accel", accel(), "-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "if=none,id=disk0,format=" + format + ",file=" + cfg.Disk,
		// The disk is the first boot option: a failed network boot would add events to PCR 4.
		"-device", "virtio-blk-pci,drive=disk0,bootindex=0",
		"-chardev", "socket,id=chrtpm,path=" + sock, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
		"-display", "none", "-monitor", "none", "-serial", "file:" + serial,
	}
	if !cfg.Reboot {
		// A panic (for example a verity failure) reboots at once; -no-reboot turns that into an exit.
		args = append(args, "-no-reboot")
	}
	switch {
	case cfg.TAP != nil:
		args = append(args, "-netdev", "tap,id=n0,ifname="+cfg.TAP.Name+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+cfg.TAP.MAC+",romfile=")
	case len(cfg.GuestFwd) > 0:
		netdev := "user,id=n0,restrict=on"
		for _, f := range cfg.GuestFwd {
			netdev += "," + f.netdevOption()
		}
		for _, f := range cfg.HostFwd {
			netdev += ",hostfwd=" + f
		}
		// romfile= : no iPXE option ROM, so the NIC never becomes a boot option.
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=")
	default:
		args = append(args, "-net", "none")
	}
	if cfg.ConsoleSocket != "" {
		args = append(args, "-device", "virtio-serial-pci,id=kdser",
			"-chardev", "socket,id=kdcon,path="+cfg.ConsoleSocket+",server=on,wait=off",
			"-device", "virtserialport,bus=kdser.0,chardev=kdcon,name=org.kubedos.console")
	}
	if len(cfg.OEMStrings) > 0 {
		t11 := "type=11"
		for _, v := range cfg.OEMStrings {
			t11 += ",value=" + strings.ReplaceAll(v, ",", ",,")
		}
		args = append(args, "-smbios", t11)
	}
	if cfg.Serial != "" || cfg.UUID != "" || cfg.SKU != "" {
		t1 := "type=1"
		for _, kv := range [][2]string{{"serial", cfg.Serial}, {"uuid", cfg.UUID}, {"sku", cfg.SKU}} {
			if kv[1] != "" {
				t1 += "," + kv[0] + "=" + strings.ReplaceAll(kv[1], ",", ",,")
			}
		}
		args = append(args, "-smbios", t1)
	}
	return args
}

// accel is TCG unless KUBEDOS_QEMU_ACCEL says otherwise: an openable
// /dev/kvm is not enough (nested KVM often lacks the SMM that Secure Boot's
// variable protection needs), so KVM is an explicit opt-in.
func accel() string {
	if a := os.Getenv("KUBEDOS_QEMU_ACCEL"); a != "" {
		return a
	}
	return "tcg"
}

func (v *VM) setupTPM(ctx context.Context) error {
	if v.cfg.TPMStateFile != "" {
		if _, err := os.Stat(v.cfg.TPMStateFile); err != nil {
			return fmt.Errorf("TPM state of %s: %w", v.cfg.Name, err)
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(v.TPMDir(), "tpm2-00.permall")); err == nil {
		return nil
	}
	// An EK certificate signed by swtpm's local CA stands in for a TPM vendor's.
	out, err := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", v.TPMDir(),
		"--create-ek-cert", "--create-platform-cert", "--overwrite").CombinedOutput()
	if err != nil {
		return fmt.Errorf("swtpm_setup for %s: %w: %s", v.cfg.Name, err, out)
	}
	return nil
}

// tpmState is swtpm's --tpmstate: the VM's state directory, or the
// single-file state it was given.
func (v *VM) tpmState() string {
	if v.cfg.TPMStateFile != "" {
		return "backend-uri=file://" + v.cfg.TPMStateFile
	}
	return "dir=" + v.TPMDir()
}

// qemuCommand runs qemu, inside the segment's namespace when the VM's NIC
// is a tap there (qemu would otherwise make a new, unconnected tap).
func qemuCommand(ctx context.Context, cfg VMConfig, args []string) *exec.Cmd {
	if cfg.TAP != nil {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", cfg.TAP.Netns, "qemu-system-x86_64"}, args...)...)
	}
	return exec.CommandContext(ctx, "qemu-system-x86_64", args...)
}

// absolute makes the config's paths absolute (swtpm and the pid files
// need that) and fills in the default size.
func (cfg *VMConfig) absolute() error {
	var err error
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return err
	}
	if cfg.Disk, err = filepath.Abs(cfg.Disk); err != nil {
		return err
	}
	if cfg.TPMStateFile != "" {
		if cfg.TPMStateFile, err = filepath.Abs(cfg.TPMStateFile); err != nil {
			return err
		}
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	return nil
}

// prepare makes the VM's directory, writes its VARS once and makes its TPM
// once; it returns the VARS path.
func (v *VM) prepare(ctx context.Context) (string, error) {
	if err := os.MkdirAll(v.TPMDir(), 0o700); err != nil {
		return "", err
	}
	vars := filepath.Join(v.cfg.Dir, "OVMF_VARS.fd")
	if _, err := os.Stat(vars); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(vars, v.cfg.Vars, 0o600); err != nil {
			return "", err
		}
	}
	return vars, v.setupTPM(ctx)
}

// Done is closed when the VM has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// Stop kills the VM (a power cut) and waits for it and its swtpm to exit.
func (v *VM) Stop() {
	select {
	case <-v.done:
		return
	default:
	}
	_ = v.qemu.Process.Kill()
	<-v.done
}

// WaitSerial polls the console log until re matches, the VM exits or ctx
// ends, and returns the first match's submatches.
func (v *VM) WaitSerial(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(v.SerialLog())
		if m := re.FindStringSubmatch(string(b)); m != nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for %q on the console: %w", v.cfg.Name, re, ctx.Err())
		case <-v.done:
			b, _ := os.ReadFile(v.SerialLog())
			if m := re.FindStringSubmatch(string(b)); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("%s exited before %q appeared on the console", v.cfg.Name, re)
		case <-tick.C:
		}
	}
}

// waitListening returns once swtpm serves its control socket, so qemu's
// connect cannot land between swtpm's bind and listen. Probing is harmless:
// swtpm keeps listening and serves qemu as its next client (--terminate
// watches the data channel qemu hands over, not this connection).
func waitListening(ctx context.Context, sock string, d time.Duration) error {
	conn, err := dialSocket(ctx, sock, d)
	if err != nil {
		return err
	}
	return conn.Close()
}

// dialSocket connects to a unix socket a child process is about to serve.
// The socket file appears at bind(), but connect() is refused until the
// child calls listen(): a loaded host loses that gap, so a refused or
// missing socket is retried until d has passed.
func dialSocket(ctx context.Context, path string, d time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(d)
	var dialer net.Dialer
	for {
		conn, err := dialer.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not accepting connections within %s: %w", path, d, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
