package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// BootReport is what one boot check found.
type BootReport struct {
	Role       string        `json:"role"`
	Booted     bool          `json:"booted"`
	Seconds    float64       `json:"seconds"`
	Status     *agent.Status `json:"status,omitempty"`
	Phase      string        `json:"pcr11Phase,omitempty"`
	Mismatches []string      `json:"mismatches"`
	Console    string        `json:"console"`
}

// BootCheckConfig: boot Role's image of BuildDir with the keys in KeysDir;
// Dir keeps the VM's files (empty: a temporary directory, removed after).
type BootCheckConfig struct {
	BuildDir, Role, KeysDir, Dir string
	MemoryMiB                    int
	Timeout                      time.Duration
	Events                       Events
}

var (
	bootStatusRE = regexp.MustCompile(regexp.QuoteMeta(agent.StatusLinePrefix) + `(\{.*\})`)
	bootRefused  = regexp.MustCompile(`Access Denied|Security Violation|No bootable option|kubedos-init: FATAL: .*|Kernel panic - not syncing: .*`)
)

// BootCheck boots a role's image once as a throwaway VM with Secure Boot
// enforced and a TPM, waits for kubedosd's status line on the console and
// compares the PCRs it read with the manifest's prediction. A boot that
// fails or mismatches is a report (Booted false, Mismatches), not an error.
func BootCheck(ctx context.Context, cfg BootCheckConfig) (*BootReport, error) {
	m, _, err := manifest.Read(filepath.Join(cfg.BuildDir, manifest.ManifestFile))
	if err != nil {
		return nil, err
	}
	rm, ok := m.Roles[cfg.Role]
	if !ok {
		return nil, fmt.Errorf("build %s has no role %q", cfg.BuildDir, cfg.Role)
	}
	ks, err := sign.LoadKeySet(cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	vars, err := EnrolledVars(ks)
	if err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kubedos-boot-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	disk, err := filepath.Abs(filepath.Join(cfg.BuildDir, "roles", cfg.Role, build.FileDiskQcow2))
	if err != nil {
		return nil, err
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	_ = os.Remove(overlay)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", disk, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("disk overlay: %w: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	events{cfg.Events}.msg("booting role %s (%s) under QEMU with Secure Boot enforced; console: %s", cfg.Role, rm.RoleID, filepath.Join(dir, "serial.log"))
	start := time.Now()
	vm, err := qemu.Start(ctx, qemu.VMConfig{Name: "kubedos-" + cfg.Role, Dir: dir, Disk: overlay, Vars: vars, MemoryMiB: cfg.MemoryMiB})
	if err != nil {
		return nil, err
	}
	defer vm.Stop()
	match, err := vm.WaitSerial(ctx, regexp.MustCompile(bootStatusRE.String()+"|"+bootRefused.String()))
	rep := &BootReport{Role: cfg.Role, Seconds: time.Since(start).Seconds(), Mismatches: []string{}}
	console, _ := os.ReadFile(vm.SerialLog())
	rep.Console = tail(string(console), 15)
	if err != nil {
		rep.Mismatches = append(rep.Mismatches, err.Error())
		return rep, nil
	}
	if match[1] == "" {
		rep.Mismatches = append(rep.Mismatches, "did not boot: "+strings.TrimSpace(match[0]))
		return rep, nil
	}
	rep.Booted = true
	var st agent.Status
	if err := json.Unmarshal([]byte(match[1]), &st); err != nil {
		return nil, fmt.Errorf("kubedosd status line: %w", err)
	}
	rep.Status = &st
	if st.SecureBoot != "enabled" {
		rep.Mismatches = append(rep.Mismatches, "Secure Boot is "+st.SecureBoot)
	}
	if st.Build != rm.RoleID {
		rep.Mismatches = append(rep.Mismatches, fmt.Sprintf("node booted build %s, manifest says %s", st.Build, rm.RoleID))
	}
	phase, mism, err := build.ComparePCRs(rm, st.PCRs)
	if err != nil {
		return nil, err
	}
	rep.Phase = phase
	rep.Mismatches = append(rep.Mismatches, mism...)
	return rep, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
