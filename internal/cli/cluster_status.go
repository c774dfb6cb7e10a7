package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/spf13/cobra"
)

func newClusterStatusCmd(g *globals) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "status SPEC",
		Short: "Show the cluster's VMs and what the hub says of each node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			cfg, err := f.load(args[0], true, nil)
			if err != nil {
				return err
			}
			rep, err := cluster.New(cfg).Status(cmd.Context())
			if err != nil {
				return err
			}
			return printCluster(g, rep)
		},
	}
	f.add(cmd, false)
	return cmd
}

func newClusterDownCmd(g *globals) *cobra.Command {
	var f clusterFlags
	var purge bool
	cmd := &cobra.Command{
		Use:   "down SPEC",
		Short: "Stop every VM, its swtpm and the hub, remove the LAN namespace; --purge also deletes TPMs, disks and hub state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.load(args[0], false, nil)
			if err != nil {
				return err
			}
			if err := cluster.New(cfg).Down(cmd.Context(), purge); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "cluster %s is down (%d VMs and the hub stopped, LAN namespace removed)%s\n", cfg.Spec.Metadata.Name, len(cfg.Spec.Topology.Nodes),
				map[bool]string{true: "; state purged", false: ""}[purge])
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the TPM state, disks and hub state")
	return cmd
}

// printCluster renders a cluster report as text or JSON.
func printCluster(g *globals, rep *cluster.Report) error {
	if g.output == OutputJSON {
		return g.writeJSON(rep)
	}
	if rep.LAN.Up {
		fmt.Fprintf(g.stdout, "LAN %s: bridge in network namespace %s, host end %s\n", rep.LAN.Gateway, rep.LAN.Netns, rep.LAN.HostInterface)
	} else {
		fmt.Fprintln(g.stdout, "LAN: not up")
	}
	if rep.Hub == "" {
		fmt.Fprintf(g.stdout, "cluster %s: hub not running\n", rep.Cluster)
	} else {
		fmt.Fprintf(g.stdout, "cluster %s: hub %s on %s (kubedos node list --hub %s --keys %s)\n", rep.Cluster, rep.Hub, rep.HubOn, rep.Hub, rep.KeysDir)
	}
	if rep.HubError != "" {
		fmt.Fprintf(g.stdout, "hub not answering: %s\n", rep.HubError)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tVM\tSTATE\tBUILD\tNODE API\tCONSOLE")
	for _, n := range rep.Nodes {
		state := n.State
		switch {
		case state == "" && rep.HubError != "":
			state = "unknown" // the hub did not answer
		case state == "":
			state = "not enrolled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.VM, state, n.BuildID, n.API, n.Console)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Nodes) > 0 && rep.Nodes[0].API != "" {
		fmt.Fprintf(g.stdout, "reach a node: kubedos node health --node %s --name %s --keys %s\n", rep.Nodes[0].API, rep.Nodes[0].Name, rep.KeysDir)
	}
	return nil
}

// printDeployed renders a proxmox deploy's outcomes (nil: nothing done).
func printDeployed(g *globals, results []target.Ensured) error {
	if results == nil {
		return nil
	}
	if g.output == OutputJSON {
		return g.writeJSON(results)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVMID\tACTION\tEK")
	for _, r := range results {
		ek := r.EKHash
		if len(ek) > 16 {
			ek = ek[:16] + "…"
		}
		if ek == "" {
			ek = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name, r.VMID, r.Action, ek)
	}
	return tw.Flush()
}
