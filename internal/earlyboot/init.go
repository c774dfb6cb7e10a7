package earlyboot

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/kubedos/kubedos/internal/tpmseal"
	"golang.org/x/sys/unix"
)

// Paths inside the initrd, written by the build.
const (
	ModulesDir  = "/lib/modules/kubedos"
	ModulesList = "/etc/kubedos/modules" // module file names, dependencies first
	sysroot     = "/sysroot"
)

// Partition labels of DESIGN.md §4.
const (
	LabelESP   = "esp"
	LabelState = "state"
	LabelData  = "data"
)

// RootLabel and VerityLabel name a slot's partitions.
func RootLabel(slot string) string   { return "root-" + slot }
func VerityLabel(slot string) string { return "verity-" + slot }

// Init runs the whole early boot and, on success, never returns: it execs
// systemd in the new root. Any error is returned for the caller to report.
func Init(ctx context.Context, console io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(console, "kubedos-init: "+format+"\n", args...) }
	if err := mountEarly(); err != nil {
		return err
	}
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read /proc/cmdline: %w", err)
	}
	cfg, err := ParseCmdline(string(raw))
	if err != nil {
		return err
	}
	logf("build %s, roothash %s", cfg.Build, cfg.RootHash)
	// A bad LAN address is the deploy step's mistake: say so and boot on
	// (the image's DHCP configuration stays), so the node API can tell.
	lanSet := false
	if oem, err := OEMStrings(); err != nil {
		logf("%v", err)
	} else if addr, err := WriteLAN(oem); err != nil {
		logf("SMBIOS %v; the LAN stays on DHCP", err)
	} else if addr != "" {
		logf("LAN address %s (SMBIOS)", addr)
		lanSet = true
	}
	if err := loadModules(logf); err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	disk, parts, err := findDisk(waitCtx, LabelState)
	if err != nil {
		return err
	}
	slot, err := FindSlot(parts, cfg.RootHash)
	if err != nil {
		return fmt.Errorf("disk %s: %w", disk, err)
	}
	if err := os.MkdirAll(filepath.Dir(BootSlotFile), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(BootSlotFile, []byte(slot+"\n"), 0o644); err != nil {
		return err
	}
	dev := func(label string) (string, error) {
		for _, p := range parts {
			if p.Label == label {
				return waitNode(waitCtx, PartitionNode(disk, p.Number))
			}
		}
		return "", fmt.Errorf("disk %s has no partition labelled %q", disk, label)
	}
	rootDev, err := dev(RootLabel(slot))
	if err != nil {
		return err
	}
	hashDev, err := dev(VerityLabel(slot))
	if err != nil {
		return err
	}
	devnum, err := OpenVerity("kubedos-root", VerityParams{DataDevice: rootDev, HashDevice: hashDev,
		DataBlocks: cfg.DataBlocks, RootHash: cfg.RootHash, Salt: cfg.Salt})
	if err != nil {
		return fmt.Errorf("open verity root %s with hash %s: %w", rootDev, hashDev, err)
	}
	const mapped = "/dev/kubedos-root"
	if err := unix.Mknod(mapped, unix.S_IFBLK|0o600, int(devnum)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mknod %s: %w", mapped, err)
	}
	logf("slot %s: verity root open on %s (data %s, hash %s)", slot, mapped, rootDev, hashDev)
	if err := mount(mapped, sysroot, "squashfs", unix.MS_RDONLY, ""); err != nil {
		return err
	}
	stateDev, err := dev(LabelState)
	if err != nil {
		return err
	}
	policy, err := statePolicy(logf)
	if err != nil {
		return err
	}
	if err := seedFromTPM(waitCtx); err != nil {
		logf("%v; going on (the first random numbers may wait for the kernel)", err)
	}
	stateMapped, err := openState(waitCtx, stateDev, LabelState, StateFSFile, policy, logf)
	if err != nil {
		return err
	}
	if err := mount(stateMapped, sysroot+"/state", "ext4", unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return err
	}
	// /var is the root image's /var with the node's changes kept on state.
	for _, d := range []string{"/state/var.upper", "/state/var.work"} {
		if err := os.MkdirAll(sysroot+d, 0o755); err != nil {
			return fmt.Errorf("create %s on state: %w", d, err)
		}
	}
	if err := mount("overlay", sysroot+"/var", "overlay", 0,
		"lowerdir="+sysroot+"/var,upperdir="+sysroot+"/state/var.upper,workdir="+sysroot+"/state/var.work"); err != nil {
		return err
	}
	// A bare-metal node's address, typed on its console on Day 0, is on
	// state: networkd reads /run only once systemd starts.
	if !lanSet {
		lanFromStateFile(sysroot+IdentityFile, logf)
	}
	dataDev, err := dev(LabelData)
	if err != nil {
		return err
	}
	dataMapped, err := openState(waitCtx, dataDev, LabelData, DataFSFile, policy, logf)
	if err != nil {
		return err
	}
	if err := mount(dataMapped, sysroot+"/data", "ext4", unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return err
	}
	logf("state and data mounted; switching root")
	return switchRoot()
}

// lanFromStateFile writes the LAN unit from the identity file at path, if
// it names an address; problems are logged and the LAN stays on DHCP.
func lanFromStateFile(path string, logf func(string, ...any)) {
	pairs := map[string]string{}
	if err := ReadIdentityFile(pairs, path); err != nil {
		logf("%v", err)
		return
	}
	if addr, err := WriteLAN(pairs); err != nil {
		logf("%s: %v; the LAN stays on DHCP", IdentityFile, err)
	} else if addr != "" {
		logf("LAN address %s (%s, set on the console)", addr, IdentityFile)
	}
}

// TPMDevice is the kernel's TPM resource manager: handles a process leaves
// are flushed when it closes the device.
const TPMDevice = "/dev/tpmrm0"

// seedFromTPM seeds the kernel's RNG from the TPM (SeedKernelRNG).
func seedFromTPM(ctx context.Context) error {
	dev, err := waitNode(ctx, TPMDevice)
	if err != nil {
		return err
	}
	tpm, err := tpm2.OpenTPM(dev)
	if err != nil {
		return err
	}
	defer tpm.Close()
	return SeedKernelRNG(tpm)
}

// statePolicy reads the UKI's signed PCR policy that systemd-stub put in
// the initrd and keeps a copy for the running system.
func statePolicy(logf func(string, ...any)) (StatePolicy, error) {
	policy, err := tpmseal.ReadPolicy(StubPCRPublicKey, StubPCRSignature)
	switch {
	case errors.Is(err, ErrNoStatePolicy):
		logf("state: %v", err) // a disk sealed to PCR 7 alone still opens; nothing new is sealed
		return StatePolicy{}, nil
	case err != nil:
		return StatePolicy{}, fmt.Errorf("state: the UKI's signed PCR policy: %w", err)
	}
	return policy, keepStatePolicy()
}

// openState unlocks (or, on a blank partition, creates) the encrypted
// partition part (label name: state or data) with the TPM and the device
// mapper, and returns the decrypted device to mount.
func openState(ctx context.Context, part, name, fsFile string, policy StatePolicy, logf func(string, ...any)) (string, error) {
	fs, err := os.ReadFile(fsFile)
	if err != nil {
		return "", fmt.Errorf("%s: the initrd's empty filesystem: %w", name, err)
	}
	tpm, err := waitNode(ctx, TPMDevice)
	if err != nil {
		return "", fmt.Errorf("%s: the key is sealed to the TPM: %w", name, err)
	}
	return OpenState(part, StateDeps{
		OpenTPM: func() (io.ReadWriteCloser, error) { return tpm2.OpenTPM(tpm) },
		Rand:    rand.Reader,
		Map:     mapCrypt,
		FS:      fs,
		Policy:  policy,
		Logf:    logf,
		Name:    name,
	})
}

// Where the running system finds the UKI's signed PCR policy (/run moves
// into the new root; the initrd's /.extra does not): kubedosd seals and
// unseals the master's CA key under the same policy.
const (
	RunPCRPublicKey = "/run/kubedos/tpm2-pcr-public-key.pem"
	RunPCRSignature = "/run/kubedos/tpm2-pcr-signature.json"
)

func keepStatePolicy() error {
	for _, f := range [][2]string{{StubPCRPublicKey, RunPCRPublicKey}, {StubPCRSignature, RunPCRSignature}} {
		b, err := os.ReadFile(f[0]) // ReadPolicy read it, bounded
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(f[1]), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f[1], b, 0o444); err != nil {
			return err
		}
	}
	return nil
}

// mapCrypt opens the crypt mapping and makes its device node (no udev in
// the initrd; after the switch udev adds /dev/mapper/<name>).
func mapCrypt(name string, p CryptParams) (string, error) {
	devnum, err := OpenCrypt(name, p)
	if err != nil {
		return "", err
	}
	node := "/dev/" + name
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(devnum)); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("mknod %s: %w", node, err)
	}
	return node, nil
}

func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("create mount point %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", src, fstype, dst, err)
	}
	return nil
}

func mountEarly() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		if err := mount(m.src, m.dst, m.fs, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	return nil
}

func loadModules(logf func(string, ...any)) error {
	f, err := os.Open(ModulesList)
	if err != nil {
		return fmt.Errorf("open module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		if err := loadModule(filepath.Join(ModulesDir, name)); err != nil {
			return err
		}
		n++
	}
	logf("loaded %d modules", n)
	return sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// findDisk polls the block devices until one has a GPT with a partition
// labelled want: virtio disks appear asynchronously after their driver loads.
func findDisk(ctx context.Context, want string) (string, []Partition, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		entries, _ := os.ReadDir("/sys/block")
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "dm-") {
				continue
			}
			parts, err := readDiskGPT("/dev/" + name)
			if err != nil {
				continue
			}
			for _, p := range parts {
				if p.Label == want {
					return name, parts, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", nil, fmt.Errorf("no disk with a partition labelled %q appeared: %w", want, ctx.Err())
		case <-tick.C:
		}
	}
}

func readDiskGPT(path string) ([]Partition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadGPT(f)
}

// PartitionNode names partition n of disk (vda) the way the kernel does.
func PartitionNode(disk string, n int) string {
	last := disk[len(disk)-1]
	if last >= '0' && last <= '9' {
		return fmt.Sprintf("/dev/%sp%d", disk, n) // nvme0n1p1, mmcblk0p1
	}
	return fmt.Sprintf("/dev/%s%d", disk, n)
}

func waitNode(ctx context.Context, path string) (string, error) {
	for {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("device %s did not appear: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// switchRoot moves the API filesystems into the new root, makes it / and
// execs systemd. The initramfs is left in memory: it is a few MB.
func switchRoot() error {
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		if err := unix.Mount(m, sysroot+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the new root: %w", m, err)
		}
	}
	if err := unix.Chdir(sysroot); err != nil {
		return fmt.Errorf("chdir %s: %w", sysroot, err)
	}
	if err := unix.Mount(sysroot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", sysroot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec("/sbin/init", []string{"/sbin/init"}, os.Environ())
}
