//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// bootTimeout bounds one boot under TCG (a Debian boot to multi-user takes
// ~25 s here; the first firmware start after idle can take 40 s more).
const bootTimeout = 4 * time.Minute

var (
	statusRE  = regexp.MustCompile(regexp.QuoteMeta(agent.StatusLinePrefix) + `(\{.*\})`)
	refusedRE = regexp.MustCompile(`Access Denied|Security Violation|No bootable option`)
	initFatal = regexp.MustCompile(`kubedos-init: FATAL: .*`)
)

// enrolledVars is OVMF's blank VARS with the platform's PK, KEK and db.
func enrolledVars(t *testing.T, keysDir string) []byte {
	t.Helper()
	ks, err := sign.LoadKeySet(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	read := func(rel string) []byte {
		b, err := os.ReadFile(ks.Path(rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	blank, err := os.ReadFile(qemu.OVMFVarsBlank)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := qemu.EnrollSecureBoot(blank, read(sign.FilePKESL), read(sign.FileKEKESL), read(sign.FileDBESL), ks.DB.NotBefore)
	if err != nil {
		t.Fatal(err)
	}
	return vars
}

// startVM boots a copy-on-write overlay of disk with the platform's keys
// enrolled; extra adds per-test settings (NIC, SMBIOS strings).
func startVM(t *testing.T, c *cluster, name, disk string, extra func(*qemu.VMConfig)) (*qemu.VM, context.Context) {
	t.Helper()
	dir := filepath.Join(work, "vm-"+name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	format := "raw"
	if filepath.Ext(disk) == ".qcow2" {
		format = "qcow2"
	}
	tool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", format, "-b", disk, overlay)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	t.Cleanup(cancel)
	cfg := qemu.VMConfig{Name: name, Dir: dir, Disk: overlay, Vars: enrolledVars(t, filepath.Join(c.dir, "keys")), MemoryMiB: 1024}
	if extra != nil {
		extra(&cfg)
	}
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Stop)
	return vm, ctx
}

// waitConsole waits for re on the VM's console and logs its tail. A VM
// that stopped (powered off, or a panic with -no-reboot) returns no match.
func waitConsole(t *testing.T, vm *qemu.VM, ctx context.Context, name string, re *regexp.Regexp) ([]string, string) {
	t.Helper()
	start := time.Now()
	m, err := vm.WaitSerial(ctx, re)
	log, _ := os.ReadFile(vm.SerialLog())
	t.Logf("%s: console after %s:\n%s", name, time.Since(start).Round(time.Second), lastLines(string(log), 14))
	if err != nil {
		select {
		case <-vm.Done():
			return nil, string(log)
		default:
			t.Fatal(err)
		}
	}
	return m, string(log)
}

// bootDisk boots disk and waits for kubedosd's status line, a refusal by
// the firmware, or a fatal message of kubedos-init.
func bootDisk(t *testing.T, c *cluster, name, disk string) (status *agent.Status, console string) {
	t.Helper()
	vm, ctx := startVM(t, c, name, disk, nil)
	defer vm.Stop()
	m, log := waitConsole(t, vm, ctx, name, regexp.MustCompile(statusRE.String()+`|`+refusedRE.String()+`|`+initFatal.String()))
	if m == nil || m[1] == "" {
		return nil, log
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(m[1]), &st); err != nil {
		t.Fatalf("status line: %v", err)
	}
	return &st, log
}

// TestBootSecureBootTPM boots the built image and compares what the node
// reports with the signed manifest.
func TestBootSecureBootTPM(t *testing.T) {
	c := manufacture(t)
	st, console := bootDisk(t, c, "good", c.role(build.FileDiskQcow2))
	if st == nil {
		t.Fatalf("the built image did not boot to kubedosd:\n%s", lastLines(console, 30))
	}
	rm := c.manifest.Roles["master"]
	if st.SecureBoot != "enabled" {
		t.Errorf("Secure Boot is %s in the guest", st.SecureBoot)
	}
	if st.Build != rm.RoleID || st.Slot != "a" || st.RootHash != rm.RootHash {
		t.Errorf("node reports build %s slot %s root %s; manifest says %s a %s", st.Build, st.Slot, st.RootHash, rm.RoleID, rm.RootHash)
	}
	if !st.EventLog {
		t.Error("no TCG event log in securityfs")
	}
	comparePCRs(t, rm, st)
	// First boot: kubedos-init made the encrypted state (issue 14 item 8).
	if m := stateCreatedRE.FindStringSubmatch(console); m == nil {
		t.Errorf("no encrypted state made at first boot:\n%s", lastLines(console, 40))
	} else {
		t.Logf("FIGURE first boot: new state key sealed, header and filesystem written through dm-crypt: %s", m[1])
	}
	if m := dataCreatedRE.FindStringSubmatch(console); m == nil {
		t.Errorf("no encrypted data partition made at first boot:\n%s", lastLines(console, 40))
	} else {
		t.Logf("FIGURE first boot: new data key sealed, data filesystem written through dm-crypt: %s", m[1])
	}
}

// predicted returns the manifest's PCR 4 and 7 values and PCR 11 at the
// "ready" phase, at which kubedosd reads them.
func predicted(t *testing.T, rm manifest.RoleManifest) map[string]string {
	t.Helper()
	p, err := build.PredictedPCRs(rm)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range p.PCRs {
		out[strconv.Itoa(v.Index)] = v.Value.String()
	}
	for _, ph := range p.PCR11Phases {
		if ph.Name == measure.PhaseReady.Name {
			out["11"] = ph.Value.String()
		}
	}
	return out
}

// comparePCRs checks the node's PCRs against the manifest's prediction and
// names the phase a PCR 11 mismatch matches, if any.
func comparePCRs(t *testing.T, rm manifest.RoleManifest, st *agent.Status) {
	t.Helper()
	want := predicted(t, rm)
	for _, i := range []string{"4", "7", "11"} {
		if !strings.EqualFold(st.PCRs[i], want[i]) {
			t.Errorf("PCR %s: node has %s, manifest predicts %s", i, st.PCRs[i], want[i])
		}
	}
	if t.Failed() {
		p, _ := build.PredictedPCRs(rm)
		for _, ph := range p.PCR11Phases {
			if strings.EqualFold(st.PCRs["11"], ph.Value.String()) {
				t.Logf("PCR 11 matches phase %q instead of %q", ph.Name, measure.PhaseReady.Name)
			}
		}
	}
}
