//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/target/qemu"
)

// Issue 14 item 8 on VMs: the state partition is encrypted, its key
// sealed to the node's TPM (internal/earlyboot/state.go).

var (
	stateUnlockedRE = regexp.MustCompile(`kubedos-init: state: unlocked (\S+) \(aes-xts-plain64, key sealed to PCR 7 and a signed PCR 11\) on (/dev/kubedos-state) in (\S+)`)
	stateCreatedRE  = regexp.MustCompile(`kubedos-init: state: made a new encrypted state on \S+ \(aes-xts-plain64, 512-bit key sealed to PCR 7 and a signed PCR 11, key \S+\) in (\S+)`)
	dataCreatedRE   = regexp.MustCompile(`kubedos-init: data: made a new encrypted data on \S+ \(aes-xts-plain64, 512-bit key sealed to PCR 7 and a signed PCR 11, key \S+\) in (\S+)`)
	stateRefusedRE  = regexp.MustCompile(`kubedos-init: FATAL: state: the TPM refused to unseal the state key \(PCR 7,11 policy\): this disk was not sealed on this machine, Secure Boot changed, or this UKI is not signed for it`)
)

// stateUnlocked checks a running node's console (the boot after a power
// cut: not its first) for its state unlocked with the TPM onto the crypt
// mapping, and logs the time the unlock took.
func stateUnlocked(t *testing.T, dir, name string) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(dir, ".kubedos", "clusters", "local", "nodes", name, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := stateUnlockedRE.FindSubmatch(log)
	if m == nil {
		t.Errorf("%s: no encrypted state unlocked on its console:\n%s", name, lastLines(string(log), 40))
		return
	}
	t.Logf("FIGURE state unlock (TPM unseal + dm-crypt table) at boot, %s: %s (partition %s on %s)", name, m[3], m[1], m[2])
}

// stolenDiskRefused boots a copy of a stopped node's disk in a new VM with
// a fresh TPM (swtpm), under the same Secure Boot keys (so PCR 7 is the
// same): the disk moved to another machine. kubedos-init must refuse to
// unlock the state, say so on the console and power off before systemd,
// so the node's identity on that state is never presented.
func stolenDiskRefused(t *testing.T, dir, name string) {
	t.Helper()
	src := filepath.Join(dir, ".kubedos", "clusters", "local", "nodes", name, "disk.qcow2")
	vmDir := filepath.Join(work, "stolen-"+name)
	os.RemoveAll(vmDir)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(vmDir, "disk.qcow2")
	// A full copy, not an overlay: the original's chain stays untouched.
	tool(t, "qemu-img", "convert", "-O", "qcow2", src, disk)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.VMConfig{Name: "stolen-" + name, Dir: vmDir, Disk: disk, Vars: enrolledVars(t, filepath.Join(dir, "keys")), MemoryMiB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	start := time.Now()
	// Waits for kubedos-init's verdict or kubedosd, or for the VM to stop.
	// The match may be a line still being written: the whole log is judged
	// once the VM is off.
	waitConsole(t, vm, ctx, "stolen-"+name, regexp.MustCompile(stateRefusedRE.String()+`|`+statusRE.String()+`|`+initFatal.String()))
	select {
	case <-vm.Done():
	case <-time.After(30 * time.Second):
		t.Errorf("the copied disk of %s did not power off after kubedos-init stopped", name)
	}
	log, err := os.ReadFile(vm.SerialLog())
	if err != nil {
		t.Fatal(err)
	}
	if !stateRefusedRE.Match(log) {
		t.Fatalf("the copied disk of %s with a fresh TPM did not refuse its state:\n%s", name, lastLines(string(log), 30))
	}
	if statusRE.Match(log) {
		t.Errorf("the copied disk of %s reached kubedosd: it could present %s's identity", name, name)
	}
	t.Logf("outcome: %s's disk with a fresh TPM refused its state after %s and powered off", name, time.Since(start).Round(time.Second))
}
