package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubedos/kubedos/internal/api"
)

const consoleLoginLong = `Ask the hub for a one-time link into the web console it serves on the master
(https://MASTER:8443, once the hub was handed over), and print it.

The hub authenticates this call by your certificate (--keys, or --cert and
--key) as for any other call, audits it under your name (console.login), and
binds the link to your certificate and role: the session it opens acts as you,
by the hub's role table, never with more than your certificate's role
(--role may ask for less, e.g. an admin's read-only session). The link works
once, within two minutes; the session ends at the latest when your
certificate does, and at once if it is revoked.

A browser holding your certificate needs no link: the console asks for a
client certificate and logs it in directly.
See docs/console.md.`

func newConsoleLoginCmd(g *globals) *cobra.Command {
	var c hubClient
	var role string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time link into the web console the hub serves on the master",
		Long:  consoleLoginLong,
		Example: `  kubedos console login --spec cluster.yaml
  kubedos console login --hub 10.20.0.10:7443 --keys keys --role reader`,
		Args: cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			got, err := cl.ConsoleLogin(cmd.Context(), role)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(got)
			}
			fmt.Fprintf(g.stderr, "console of the hub at %s (from %s): one session as %s (%s), open it before %s\n",
				c.addr, c.where, got.Operator, got.Role, got.ExpiresAt.Local().Format(time.TimeOnly))
			fmt.Fprintf(g.stdout, "%s/login?t=%s\n", got.URL, got.Token)
			return nil
		}),
	}
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "the cluster's spec: its hub is found as cluster status finds it")
	cmd.Flags().StringVar(&role, "role", "", "the session's role: reader, operator or admin (default: your certificate's; never more)")
	return cmd
}
