package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/spf13/cobra"
)

func newClusterStatusCmd(g *globals) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "status SPEC",
		Short: "Show the cluster's VMs and what the hub says of each node",
		Long:  clusterStatusLong,
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
	f.addTarget(cmd)
	cmd.Flags().StringVar(&f.hub, "hub", "", "proxmox: the hub to ask (host:port; default: the --hub of the last deploy, kept in the state directory)")
	return cmd
}

func newClusterDownCmd(g *globals) *cobra.Command {
	var f clusterFlags
	var purge bool
	cmd := &cobra.Command{
		Use:   "down SPEC",
		Short: "Stop every VM, its swtpm and the hub, remove the LAN namespace; --purge also deletes TPMs, disks and hub state",
		Long:  clusterDownLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.load(args[0], false, nil)
			if err != nil {
				return err
			}
			proxmox := cfg.TargetName == spec.TargetProxmox || (cfg.TargetName == "" && cfg.Spec.Targets.Default == spec.TargetProxmox)
			if proxmox {
				if err := g.checkOutput(OutputText, OutputJSON); err != nil {
					return err
				}
			}
			res, err := cluster.New(cfg).Down(cmd.Context(), purge)
			if proxmox {
				return errors.Join(err, printDown(g, cfg.Spec, res, purge && err == nil))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "cluster %s is down (%d VMs and the hub stopped, LAN namespace removed)%s\n", cfg.Spec.Metadata.Name, len(cfg.Spec.Topology.Nodes),
				map[bool]string{true: "; state purged", false: ""}[purge])
			return nil
		},
	}
	f.add(cmd, false)
	f.addTarget(cmd)
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the TPM state, disks and hub state (proxmox: only the local state directory)")
	return cmd
}

// printDown renders what cluster down did to each proxmox VM.
func printDown(g *globals, s *spec.ClusterSpec, res []target.Ensured, purged bool) error {
	if g.output == OutputJSON {
		if res == nil {
			res = []target.Ensured{}
		}
		return g.writeJSON(res)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVMID\tACTION")
	count := map[target.Action]int{}
	for _, r := range res {
		count[r.Action]++
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Name, r.VMID, r.Action)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	kept := "the VMs are kept (destructive.destroyVMs is off); the hub and the bridge are not touched"
	if s.Destructive.DestroyVMs {
		kept = "destructive.destroyVMs is on; the hub and the bridge are not touched"
	}
	fmt.Fprintf(g.stdout, "cluster %s on proxmox: %d VMs stopped, %d destroyed, %d absent; %s%s\n", s.Metadata.Name,
		count[target.ActionStopped], count[target.ActionDestroyed], count[target.ActionAbsent], kept,
		map[bool]string{true: "; local state purged", false: ""}[purged])
	return nil
}

// printCluster renders a cluster report as text or JSON.
func printCluster(g *globals, rep *cluster.Report) error {
	if g.output == OutputJSON {
		return g.writeJSON(rep)
	}
	if rep.Target == spec.TargetProxmox {
		return printProxmoxCluster(g, rep)
	}
	if rep.LAN != nil && rep.LAN.Up {
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.VM, hubState(rep, n), n.BuildID, n.API, n.Console)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Nodes) > 0 && rep.Nodes[0].API != "" {
		fmt.Fprintf(g.stdout, "reach a node: kubedos node health --node %s --name %s --keys %s\n", rep.Nodes[0].API, rep.Nodes[0].Name, rep.KeysDir)
	}
	if rep.Dashboards != "" {
		fmt.Fprintf(g.stdout, "dashboards: %s (any cluster certificate of role reader or above; docs/observability.md)\n", rep.Dashboards)
	}
	if rep.Console != "" {
		fmt.Fprintf(g.stdout, "console: %s (served by the hub on %s; log in with your cluster certificate, or open the link kubedos console login --hub %s --keys %s prints; docs/console.md)\n",
			rep.Console, rep.HubOn, rep.Hub, rep.KeysDir)
	}
	return nil
}

// hubState is the hub's word on a node, or why there is none.
func hubState(rep *cluster.Report, n cluster.NodeReport) string {
	switch {
	case n.State == "" && (rep.HubError != "" || rep.Target != "" && rep.Hub == ""):
		return "unknown" // the hub did not answer, or (proxmox) none is known
	case n.State == "":
		return "not enrolled"
	}
	return string(n.State)
}

// printProxmoxCluster renders a proxmox cluster's report: each VM as the
// API and its guest agent see it, and the hub's word.
func printProxmoxCluster(g *globals, rep *cluster.Report) error {
	if rep.Hub == "" {
		fmt.Fprintf(g.stdout, "cluster %s on proxmox: no hub known (give --hub: where kubedos hub serve answers)\n", rep.Cluster)
	} else {
		fmt.Fprintf(g.stdout, "cluster %s on proxmox: hub %s, run by the operator (kubedos node list --hub %s --keys %s)\n", rep.Cluster, rep.Hub, rep.Hub, rep.KeysDir)
	}
	if rep.HubError != "" {
		fmt.Fprintf(g.stdout, "hub not answering: %s\n", rep.HubError)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tVMID\tVM\tAGENT\tADDRESSES\tSTATE\tBUILD\tCONSOLE")
	for _, n := range rep.Nodes {
		addrs := strings.Join(n.Addresses, ", ")
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.VMID, n.VM, dash(n.Agent), dash(addrs),
			hubState(rep, n), dash(n.BuildID), dash(n.Console))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
