package cli

import (
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/spf13/cobra"
)

// newBuildRetireCmd is `kubedos build retire BUILD-ID --reason`: flags →
// the hub's admin service → rendering.
func newBuildRetireCmd(g *globals) *cobra.Command {
	var c hubClient
	var reason string
	cmd := &cobra.Command{
		Use:   "retire BUILD-ID",
		Short: "Retire a build at the hub: no node enrolls, renews or is upgraded onto it again (admin)",
		Long: `Retire a build at the hub, for good, with the reason (audited). BUILD-ID is
the build a node reports (the BUILD column of kubedos node list: a role
image) or a signed build's build-id (every role image of it).

From then on a node attesting the build is refused enrollment and renewal
with the reason, an upgrade onto it is refused, and node list shows the nodes
still running it as retired until they are upgraded.`,
		Example: "  kubedos build retire 3f9c…e1 --reason 'CVE-2026-0001 in the kernel'",
		Args:    cobra.ExactArgs(1),
		RunE: c.runAdmin(g, func(cmd *cobra.Command, args []string, cl *api.AdminClient) error {
			rb, err := cl.RetireBuild(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(rb)
			}
			_, err = fmt.Fprintf(g.stdout, "build %s retired by %s at %s: %s\n", rb.BuildID, rb.By, rb.At.UTC().Format(time.RFC3339), rb.Reason)
			return err
		}),
	}
	c.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required): recorded in the audit log and told to every node refused")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// nodeStateText is a node's state for node list: "retired" for an
// enrolled node whose build was retired.
func nodeStateText(n api.Node) string {
	if n.Retired != "" && n.State == api.NodeEnrolled {
		return "retired"
	}
	return string(n.State)
}
