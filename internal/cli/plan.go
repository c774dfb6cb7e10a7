package cli

import (
	"fmt"

	"github.com/kubedos/kubedos/internal/plan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

func newPlanCmd(g *globals) *cobra.Command {
	var last lastRunFlags
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Show the convergence DAG a ClusterSpec expands to",
		Long: `Validate FILE and print the strict convergence DAG it expands to:

  1. attestation gate      one per node: no node exists before it attests
  2. enrollment            one per node, after its gate (and the master's):
                           the hub signs the node's certificate
  3. backplanes            the master's hub side of each WireGuard plane, then
                           each node's join of each plane with its certificate
  4. convergence           one per role present, ordered between roles
                           (etcd and load balancers before the control plane,
                           the control plane before workers)
  5. workload bring-up     Kubernetes, observability, Ceph/ZFS when enabled
  6. seal and acceptance   acceptance after everything, then seal

Every edge is explicit. --output text (default), json or dot (Graphviz).
When the cluster's hub answers (--hub, $KUBEDOS_HUB or the cluster's
state directory), each step shows its outcome in the last convergence run.`,
		Example: "  kubedos plan examples/local.yaml\n  kubedos plan examples/reference.yaml -o dot | dot -Tsvg > plan.svg",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON, OutputDot); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			graph, err := plan.Build(s)
			if err != nil {
				return err
			}
			doc, err := plan.NewDocument(s.Metadata.Name, graph)
			if err != nil {
				return err
			}
			last.mark(cmd.Context(), g, s, &doc)
			switch g.output {
			case OutputJSON:
				return doc.WriteJSON(g.stdout)
			case OutputDot:
				return doc.WriteDot(g.stdout)
			default:
				return doc.WriteText(g.stdout)
			}
		},
	}
	last.add(cmd)
	return cmd
}
