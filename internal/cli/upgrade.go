package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
)

func printOutcome(g *globals, o *cluster.Outcome) {
	switch o.Result {
	case "upgraded":
		fmt.Fprintf(g.stdout, "%s: upgraded %s → %s in %.0fs\n", o.Node, o.From, o.To, o.Seconds)
	case "written":
		fmt.Fprintf(g.stdout, "%s: build %s written to slot %s (%s); it boots at the next reboot\n", o.Node, o.To, o.Written.Slot, o.Written.Entry)
	case "current":
		fmt.Fprintf(g.stdout, "%s: already runs build %s; nothing to do\n", o.Node, o.To)
	case "rolled-back":
		fmt.Fprintf(g.stdout, "%s: build %s rolled back to %s after %.0fs: %s\n", o.Node, o.To, o.Running, o.Seconds, o.Detail)
	}
}

func nodeUpgradeCmd(g *globals) *cobra.Command {
	var (
		hc       hubClient
		nodeAddr string
		buildDir string
		outDir   string
		noReboot bool
		wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "upgrade NAME --build BUILD-ID|DIR",
		Short: "Write a signed build to a node's idle A/B slot, reboot into it, wait for it to be marked good",
		Long: `Upgrade one node (DESIGN.md §4). The hub is told the node may run the build
(its signed manifest; admin), then the node's role image — root, verity tree and
UKI, as listed in the manifest — is streamed to the node's API. kubedosd checks
the manifest's signature, every digest and the UKI's Secure Boot signature before
it writes anything, writes only the slot it is not running, adds a boot entry with
3 tries (Boot Loader Specification boot counting) and reboots.

On the new build kubedosd re-attests to the hub and runs its health checks; only
then is the boot marked good. A boot that fails its checks, or never reaches
them, is retried until its tries run out and the node falls back to the old build
by itself. This command waits for either outcome and exits 1 on a rollback.
A node that already runs the build, its boot marked good, is left alone.`,
		Example: `  kubedos node upgrade worker-1 --build out/local/<build-id> --hub 127.0.0.1:7443 --node 127.0.0.1:17444 --keys keys`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			buildDir, err := resolveBuild(buildDir, outDir)
			if err != nil {
				return err
			}
			admin, doneHub, err := hc.admin()
			if err != nil {
				return err
			}
			defer doneHub()
			nc := nodeAPIClient{addr: nodeAddr, name: args[0], keys: hc.keys, cert: hc.cert, key: hc.key}
			o, err := cluster.UpgradeNode(cmd.Context(), cluster.UpgradeTarget{Name: args[0], Hub: admin, DialNode: nc.dial}, buildDir,
				cluster.UpgradeOptions{Reboot: !noReboot, Wait: wait, Events: g.events()})
			err = hc.explain(err)
			if o != nil {
				if g.output == OutputJSON {
					_ = g.writeJSON(o)
				} else {
					printOutcome(g, o)
				}
			}
			return err
		},
	}
	hc.addFlags(cmd)
	cmd.Flags().StringVar(&nodeAddr, "node", "", "node API address host:port (default NAME:7444)")
	cmd.Flags().StringVar(&buildDir, "build", "", "build to install: its directory, or its build-id (or a unique prefix) under --out")
	cmd.Flags().StringVar(&outDir, "out", "out", "where kubedos build wrote its builds (for --build BUILD-ID)")
	cmd.Flags().BoolVar(&noReboot, "no-reboot", false, "write the idle slot and its boot entry, but do not reboot")
	cmd.Flags().DurationVar(&wait, "wait", 20*time.Minute, "how long to wait for the node to settle after the reboot")
	return cmd
}

func nodeRollbackCmd(g *globals) *cobra.Command {
	var (
		c        nodeAPIClient
		noReboot bool
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Boot a node's other A/B slot next (with tries, so a failed rollback comes back)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				r, err := cl.Rollback(ctx, !noReboot)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(r)
				}
				fmt.Fprintf(g.stdout, "%s: next boot is build %s in slot %s (%s)", r.Node, r.Build, r.Slot, r.Entry)
				if r.Rebooting {
					fmt.Fprint(g.stdout, "; rebooting now")
				}
				fmt.Fprintln(g.stdout)
				return nil
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	cmd.Flags().BoolVar(&noReboot, "no-reboot", false, "only switch the next boot")
	return cmd
}

func newClusterUpgradeCmd(g *globals) *cobra.Command {
	var (
		f    clusterFlags
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "upgrade SPEC --build DIR",
		Short: "Upgrade the local cluster's nodes one at a time, stopping at the first failure",
		Long: `Roll a build through the cluster's nodes in spec order, one at a time, as
kubedos node upgrade does for one: a node must come up on the new build with its
boot marked good before the next starts. The first failure (refused payload,
rollback, timeout) stops the roll; the nodes not reached keep their build. A
node already running the build with its boot marked good is skipped, so after
fixing what stopped a roll, running it again continues where it stopped.

With several etcd members (Kubernetes) the roll is quorum-aware: an etcd
member's turn waits until every other member reports healthy (node health,
check etcd), and the roll moves on only once the upgraded member is healthy
again, so at most one member is down or rejoining at a time. A member not
healthy within --wait stops the roll, naming it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			cfg, err := f.loadBuild(args[0], g.events())
			if err != nil {
				return err
			}
			outs, failed := cluster.New(cfg).Upgrade(cmd.Context(), cluster.UpgradeOptions{Reboot: true, Wait: wait}, func(o *cluster.Outcome) {
				if g.output != OutputJSON {
					printOutcome(g, o)
				}
			})
			if g.output == OutputJSON {
				_ = g.writeJSON(map[string]any{"nodes": outs, "error": errString(failed)})
			}
			return failed
		},
	}
	f.add(cmd, true)
	cmd.Flags().DurationVar(&wait, "wait", 20*time.Minute, "how long to wait for each node to settle after its reboot")
	return cmd
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// printBootState adds the A/B lines to kubedos node version.
func printBootState(w io.Writer, b *api.BootState) {
	if b == nil {
		return
	}
	state := "marked good"
	if b.Trial {
		state = "on trial (not marked good yet)"
	}
	fmt.Fprintf(w, "boot:      %s, %s\n", b.Entry, state)
	if b.OtherSlot != "" {
		fmt.Fprintf(w, "other slot: build %s (kubedos node rollback boots it)\n", b.OtherSlot)
	}
	for _, r := range b.RolledBack {
		fmt.Fprintf(w, "rolled back: build %s ran out of boot tries\n", r)
	}
	if b.LastCheck != "" {
		fmt.Fprintf(w, "last failed boot check: %s\n", b.LastCheck)
	}
	if b.Error != "" {
		fmt.Fprintf(w, "boot state: %s\n", b.Error)
	}
}
