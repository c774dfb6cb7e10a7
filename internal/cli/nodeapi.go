package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/spf13/cobra"
)

// nodeAPIClient holds the flags of commands that call a node's API.
type nodeAPIClient struct {
	addr, name, keys, cert, key string
	timeout                     time.Duration
}

func (c *nodeAPIClient) addFlags(cmd *cobra.Command, timeout time.Duration) {
	cmd.Flags().StringVar(&c.addr, "node", os.Getenv("KUBEDOS_NODE"), fmt.Sprintf("node API address host:port (env KUBEDOS_NODE; default <name>:%d)", api.NodeAPIPort))
	cmd.Flags().StringVar(&c.name, "name", "", "node name, which its certificate must carry (default: the host of --node when it is a name)")
	cmd.Flags().StringVar(&c.keys, "keys", "keys", "key directory: the cluster CA and, by default, the admin certificate")
	cmd.Flags().StringVar(&c.cert, "cert", "", "client certificate (default: <keys>/ca/admin.crt)")
	cmd.Flags().StringVar(&c.key, "key", "", "client key (default: <keys>/ca/admin.key)")
	cmd.Flags().DurationVar(&c.timeout, "timeout", timeout, "how long to wait for the node's answer")
}

// target resolves the address and the name the node's certificate must carry.
func (c *nodeAPIClient) target() (addr, name string, err error) {
	addr, name = c.addr, c.name
	if addr == "" && name == "" {
		return "", "", fmt.Errorf("--node ADDR or --name NAME is required")
	}
	if addr == "" {
		addr = net.JoinHostPort(name, strconv.Itoa(api.NodeAPIPort))
	}
	if name == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "", "", fmt.Errorf("--node %q: %w", addr, err)
		}
		if net.ParseIP(host) != nil {
			return "", "", fmt.Errorf("--node %s is an address: give the node's name with --name (its certificate names the node)", addr)
		}
		name = host
	}
	return addr, name, nil
}

// dial connects with the operator's client certificate, checking that the
// node's certificate chains to the cluster CA and names the node.
func (c *nodeAPIClient) dial() (*api.NodeClient, func(), error) {
	addr, name, err := c.target()
	if err != nil {
		return nil, nil, err
	}
	return cluster.Access{Keys: c.keys, Cert: c.cert, Key: c.key}.Node(addr, name)
}

// nodeCall runs fn against the node within the timeout.
func nodeCall(cmd *cobra.Command, g *globals, c *nodeAPIClient, fn func(context.Context, *api.NodeClient) error) error {
	if err := g.checkOutput(OutputText, OutputJSON); err != nil {
		return err
	}
	cl, done, err := c.dial()
	if err != nil {
		return err
	}
	defer done()
	ctx := cmd.Context()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	return fn(ctx, cl)
}

// nodeAPICommands are the `kubedos node` commands that talk to a node's own
// API (kubedosd, mTLS on port 7444) rather than to the hub.
func nodeAPICommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		nodeVersionCmd(g), nodeHealthCmd(g), nodeServicesCmd(g), nodeRestartServiceCmd(g), nodeLogsCmd(g),
		nodeDmesgCmd(g), nodePowerCmd(g, "reboot"), nodePowerCmd(g, "shutdown"), nodeConfigCmd(g), nodeDriftCmd(g), nodePlanesCmd(g), nodeMetricsCmd(g),
		nodeUpgradeCmd(g), nodeRollbackCmd(g),
	}
}

func nodeVersionCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show what a node booted (build-id, slot, root hash) and its kubedosd version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				v, err := cl.Version(ctx)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(v)
				}
				fmt.Fprintf(g.stdout, "node:      %s\nrole:      %s\nbuild:     %s\nslot:      %s\nroot hash: %s\nkubedosd:  %s %s (%s)\n",
					v.Node, v.Role, v.BuildID, v.Slot, v.RootHash, v.Kubedosd, v.Revision, v.GoVersion)
				printBootState(g.stdout, v.Boot)
				return nil
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	return cmd
}

func nodeHealthCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	var pods bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Run a node's health checks; exit 1 when it is unhealthy",
		Long: `Run a node's health checks: enrolled, certificate valid, TPM readable, systemd
running (not degraded), no failed unit, and (reported only) a fresh revocation
list from the hub, each controller, the planes, the local etcd member and the
kubelet's Node Ready where the node has them. Exits 1 when a critical check
fails.

--pods also lists a kubelet node's pods and whether each is Ready (a check
"pods", reported only), as kubedosd asks the API server for them with the
kubelet's credential; cluster upgrade waits on the same list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var unhealthy bool
			err := nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				ask := cl.Health
				if pods {
					ask = cl.HealthWithPods
				}
				h, err := ask(ctx)
				if err != nil {
					return err
				}
				unhealthy = !h.Healthy
				if g.output == OutputJSON {
					return g.writeJSON(h)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CHECK\tOK\tCRITICAL\tDETAIL")
				for _, ch := range h.Checks {
					fmt.Fprintf(tw, "%s\t%v\t%v\t%s\n", ch.Name, ch.OK, ch.Critical, ch.Detail)
				}
				if len(h.Pods) > 0 {
					fmt.Fprintln(tw, "\nPOD\tREADY")
					for _, p := range h.Pods {
						fmt.Fprintf(tw, "%s\t%v\n", p.Name, p.Ready)
					}
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				verdict := "healthy"
				if unhealthy {
					verdict = "UNHEALTHY"
				}
				fmt.Fprintf(g.stdout, "%s (systemd: %s)\n", verdict, h.SystemState)
				return nil
			})
			if err == nil && unhealthy {
				return exitError{1}
			}
			return err
		},
	}
	c.addFlags(cmd, time.Minute)
	cmd.Flags().BoolVar(&pods, "pods", false, "also list a kubelet node's pods and whether each is Ready")
	return cmd
}

func nodeServicesCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List a node's systemd services and their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				s, err := cl.Services(ctx)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(s)
				}
				return printUnits(g.stdout, s.Units...)
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	return cmd
}

func printUnits(w io.Writer, units ...api.Unit) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tLOAD\tACTIVE\tSUB\tOPERATOR\tDESCRIPTION")
	for _, u := range units {
		op := "-"
		if u.Restartable {
			op = "restart"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Load, u.Active, u.Sub, op, u.Description)
	}
	return tw.Flush()
}

func nodeRestartServiceCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	cmd := &cobra.Command{
		Use:   "restart-service SERVICE",
		Short: "Restart a systemd service on a node (operator); shows its state after",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				u, err := cl.RestartService(ctx, args[0])
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(u)
				}
				return printUnits(g.stdout, *u)
			})
		},
	}
	c.addFlags(cmd, 3*time.Minute)
	return cmd
}
