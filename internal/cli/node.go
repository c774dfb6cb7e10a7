package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect and act on nodes, through the hub and their own API"}
	var c hubClient
	list := &cobra.Command{
		Use:   "list",
		Short: "List every node the hub knows, with its state and, if refused, why",
		Args:  cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			res, err := cl.ListNodes(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(res)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tBUILD\tCERT UNTIL\tREASON")
			for _, n := range res.Nodes {
				until := ""
				if !n.CertNotAfter.IsZero() {
					until = n.CertNotAfter.UTC().Format(time.RFC3339)
				}
				reason := cluster.ReasonText(n.Reason, 60)
				if n.Retired != "" && reason == "" {
					reason = cluster.ReasonText(&api.Refusal{Check: "build-retired", Detail: n.Retired}, 60)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, nodeStateText(n), n.BuildID, until, reason)
			}
			return tw.Flush()
		}),
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one node: identity, build, certificate and the full quarantine reason",
		Args:  cobra.ExactArgs(1),
		RunE: c.runAdmin(g, func(cmd *cobra.Command, args []string, cl *api.AdminClient) error {
			n, err := cl.GetNode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printNode(g, n)
		}),
	}
	for _, sub := range []*cobra.Command{list, get} {
		c.addFlags(sub)
		c.addSpecFlags(sub, "find the hub of this spec's cluster (where cluster up left it) instead of --hub")
	}
	cmd.AddCommand(list, get, nodeAction(g, "revoke", "Revoke a node's certificates at once; the hub and nodes refuse them from now on"),
		nodeAction(g, "fence", "Fence a node (runbook step 1): revoke it and mark it to be stopped"),
		nodeAction(g, "replace", "Retire a node's identity so a fresh machine can enroll under its name through the same gate"))
	cmd.AddCommand(nodeAPICommands(g)...)
	return cmd
}

// newKubeClient makes the Kubernetes client node revoke, fence and replace
// use (nil: kube.New); tests aim it at a fake API server.
var newKubeClient func(kube.Credentials) (*kube.Client, error)

// nodeAction is node revoke|fence|replace: flags → cluster.Access.ActOnNode
// → rendering.
func nodeAction(g *globals, verb, short string) *cobra.Command {
	var c hubClient
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			act := cluster.NodeAction{Verb: cluster.NodeVerb(verb), Name: args[0], Reason: reason, NewKube: newKubeClient}
			if c.spec != "" {
				f := clusterFlags{state: c.state}
				cfg, err := f.load(c.spec, false, nil)
				if err != nil {
					return err
				}
				act.Spec = cfg.Spec
				if verb == "fence" {
					act.Stop = cluster.New(cfg).StopNode
				}
			}
			if err := c.resolve(); err != nil {
				return err
			}
			a := cluster.Access{Keys: c.keys, Cert: c.cert, Key: c.key}
			out, err := a.ActOnNode(cmd.Context(), c.addr, act)
			if out.Node == nil {
				return c.explain(err)
			}
			if perr := printActed(g, out); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	c.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the node record and the audit log")
	const kubeLong = `

With --spec, when the spec enables workloads.kubernetes and the node runs a
kubelet (a worker), the node is then taken out of Kubernetes with an admin
credential from the hub (audited there as kubernetes.admin): cordoned,
drained through the Eviction API (DaemonSet and mirror pods skipped; a
disruption budget's refusal is retried for at most 2 minutes, then
reported) and its Node object deleted. Each step is in the output. That
never fails the command: the hub's refusal of the node is what protects the
cluster. Kubernetes checks no revocation, so until the node's kubelet client
certificate expires (at most workloads.kubernetes.
kubeletClientCertificateLifetime, 1 h by default; the time is printed) a
kubelet still running there could re-create its Node object; a fenced
node's stopped VM cannot. Revoke and fence may be run again to retry the
Kubernetes steps (the hub's part is idempotent); after a replace, use
kubectl before the fresh machine enrolls.`
	if verb == "fence" {
		cmd.Long = short + `.

Fencing revokes every certificate of the node at the hub at once (the hub and
every node API refuse it from then on) and marks it fenced until it is
replaced. With --spec, the node's VM is stopped too, at once (a power cut):
on the local QEMU target, or, when the spec's targets.default is proxmox,
through the Proxmox VE API (the VM is kept; only a VM kubedos made for that
node is touched). Runbook: fence, revoke, destroy, replace.` + kubeLong
		c.addSpecFlags(cmd, "the cluster's spec: also stop the node's VM on its target, qemu or proxmox, take it out of Kubernetes (and, without --hub, find its hub)")
	} else {
		cmd.Long = short + "." + kubeLong
		c.addSpecFlags(cmd, "the cluster's spec: also take the node out of Kubernetes (and, without --hub, find its hub)")
	}
	return cmd
}

// printActed renders node revoke|fence|replace's outcome.
func printActed(g *globals, out cluster.NodeActed) error {
	if g.output == OutputJSON {
		return g.writeJSON(out)
	}
	if out.VM != nil {
		fmt.Fprintln(g.stderr, cluster.NodeDown{Name: out.VM.Name, VMID: out.VM.VMID, Action: out.VM.Action})
	}
	if err := printNode(g, out.Node); err != nil {
		return err
	}
	if out.Kubernetes != nil {
		for _, l := range out.Kubernetes.Lines() {
			fmt.Fprintln(g.stdout, l)
		}
	}
	return nil
}

func printNode(g *globals, n *api.Node) error {
	if g.output == OutputJSON {
		return g.writeJSON(n)
	}
	fmt.Fprintf(g.stdout, "name:     %s\nrole:     %s\nstate:    %s\nEK:       %s\nbuild:    %s\n", n.Name, n.Role, n.State, n.EKHash, n.BuildID)
	if n.CertSerial != "" {
		fmt.Fprintf(g.stdout, "cert:     serial %s until %s\n", n.CertSerial, n.CertNotAfter.UTC().Format(time.RFC3339))
	}
	if n.Reason != nil {
		fmt.Fprintf(g.stdout, "reason:   %s\n", cluster.ReasonText(n.Reason, 0))
	}
	if n.Retired != "" {
		fmt.Fprintf(g.stdout, "retired:  %s\n", n.Retired)
	}
	return nil
}

func newAuditCmd(g *globals) *cobra.Command {
	var c hubClient
	var from uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the hub's append-only, hash-chained audit log",
		Args:  cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			res, err := cl.Audit(cmd.Context(), from, limit)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(res)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tOUTCOME\tDETAIL")
			for _, e := range res.Entries {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, e.Outcome, strings.Join(strings.Fields(e.Detail), " "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if !res.ChainOK {
				fmt.Fprintln(g.stderr, "WARNING: the audit log's hash chain does not verify")
				return exitError{1}
			}
			return nil
		}),
	}
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "find the hub of this spec's cluster (where cluster up left it) instead of --hub")
	cmd.Flags().Uint64Var(&from, "from", 0, "first sequence number")
	cmd.Flags().IntVar(&limit, "limit", 1000, "entries at most")
	return cmd
}
