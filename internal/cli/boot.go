package cli

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
	"github.com/spf13/cobra"
)

type bootReport struct {
	Role       string        `json:"role"`
	Booted     bool          `json:"booted"`
	Seconds    float64       `json:"seconds"`
	Status     *agent.Status `json:"status,omitempty"`
	Phase      string        `json:"pcr11Phase,omitempty"`
	Mismatches []string      `json:"mismatches"`
	Console    string        `json:"console"`
}

func newBootCmd(g *globals) *cobra.Command {
	var p paths
	var role, dir string
	var timeout time.Duration
	var memory int
	cmd := &cobra.Command{
		Use:   "boot BUILD-DIR",
		Short: "Boot one role's image once under QEMU with Secure Boot and a TPM, and check its PCRs",
		Long: `Boot a role's disk image from a build as a throwaway VM: q35 under TCG (KVM with
KUBEDOS_QEMU_ACCEL=kvm), OVMF with the platform's PK, KEK and db enrolled and
Secure Boot enforced, one swtpm TPM 2.0, a copy-on-write overlay of the disk.
Wait for kubedosd's status line on the serial console, then compare the PCR
4, 7 and 11 values the node read from its TPM with the manifest's prediction.

Exit status: 0 booted and every PCR matches; 1 otherwise (refused by firmware,
kubedos-init refused the root, timeout, or a PCR mismatch).`,
		Example: "  sudo kubedos boot out/local/<build-id> --role master --keys keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			rep, err := bootOnce(cmd.Context(), g, args[0], role, p.keys, dir, memory, timeout)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				if err := g.writeJSON(rep); err != nil {
					return err
				}
			} else {
				printBoot(g, rep)
			}
			if !rep.Booted || len(rep.Mismatches) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	p.addFlags(cmd, "keys")
	cmd.Flags().StringVar(&role, "role", "master", "role whose image to boot")
	cmd.Flags().StringVar(&dir, "dir", "", "keep the VM's files (console log, TPM state) here instead of a temporary directory")
	cmd.Flags().IntVar(&memory, "memory", 1024, "guest memory in MiB")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up on the boot after this long")
	return cmd
}

var (
	bootStatusRE = regexp.MustCompile(regexp.QuoteMeta(agent.StatusLinePrefix) + `(\{.*\})`)
	bootRefused  = regexp.MustCompile(`Access Denied|Security Violation|No bootable option|kubedos-init: FATAL: .*|Kernel panic - not syncing: .*`)
)

func bootOnce(ctx context.Context, g *globals, buildDir, role, keysDir, dir string, memory int, timeout time.Duration) (*bootReport, error) {
	m, _, err := manifest.Read(filepath.Join(buildDir, manifest.ManifestFile))
	if err != nil {
		return nil, err
	}
	rm, ok := m.Roles[role]
	if !ok {
		return nil, fmt.Errorf("build %s has no role %q", buildDir, role)
	}
	ks, err := sign.LoadKeySet(keysDir)
	if err != nil {
		return nil, err
	}
	vars, err := enrolledVars(ks)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kubedos-boot-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	disk, err := filepath.Abs(filepath.Join(buildDir, "roles", role, build.FileDiskQcow2))
	if err != nil {
		return nil, err
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	_ = os.Remove(overlay)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", disk, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("disk overlay: %w: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pr := newProgress(g.stderr)
	pr.Step("booting role %s (%s) under QEMU with Secure Boot enforced; console: %s", role, rm.RoleID, filepath.Join(dir, "serial.log"))
	start := time.Now()
	vm, err := qemu.Start(ctx, qemu.VMConfig{Name: "kubedos-" + role, Dir: dir, Disk: overlay, Vars: vars, MemoryMiB: memory})
	if err != nil {
		return nil, err
	}
	defer vm.Stop()
	match, err := vm.WaitSerial(ctx, regexp.MustCompile(bootStatusRE.String()+"|"+bootRefused.String()))
	rep := &bootReport{Role: role, Seconds: time.Since(start).Seconds(), Mismatches: []string{}}
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

func enrolledVars(ks *sign.KeySet) ([]byte, error) {
	var lists [3][]byte
	for i, rel := range []string{sign.FilePKESL, sign.FileKEKESL, sign.FileDBESL} {
		b, err := os.ReadFile(ks.Path(rel))
		if err != nil {
			return nil, err
		}
		lists[i] = b
	}
	blank, err := os.ReadFile(qemu.OVMFVarsBlank)
	if err != nil {
		return nil, fmt.Errorf("OVMF firmware (Debian package ovmf): %w", err)
	}
	return qemu.EnrollSecureBoot(blank, lists[0], lists[1], lists[2], ks.DB.NotBefore)
}

func printBoot(g *globals, rep *bootReport) {
	if !rep.Booted {
		fmt.Fprintf(g.stderr, "role %s did not boot (%.0fs):\n%s\n", rep.Role, rep.Seconds, rep.Console)
		for _, m := range rep.Mismatches {
			fmt.Fprintf(g.stderr, "  %s\n", m)
		}
		return
	}
	st := rep.Status
	fmt.Fprintf(g.stdout, "role %s booted to kubedosd in %.0fs: build %s, slot %s, Secure Boot %s\n", rep.Role, rep.Seconds, st.Build, st.Slot, st.SecureBoot)
	for _, i := range []string{"4", "7", "11"} {
		fmt.Fprintf(g.stdout, "  PCR %-2s %s\n", i, st.PCRs[i])
	}
	if len(rep.Mismatches) == 0 {
		fmt.Fprintf(g.stdout, "  all PCRs equal the signed manifest's prediction (PCR 11 at phase %q)\n", rep.Phase)
		return
	}
	for _, m := range rep.Mismatches {
		fmt.Fprintf(g.stderr, "  MISMATCH %s\n", m)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
