package cli

import (
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/spf13/cobra"
)

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
			rep, err := cluster.BootCheck(cmd.Context(), cluster.BootCheckConfig{BuildDir: args[0], Role: role, KeysDir: p.keys, Dir: dir,
				MemoryMiB: memory, Timeout: timeout, Events: g.events()})
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

func printBoot(g *globals, rep *cluster.BootReport) {
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
