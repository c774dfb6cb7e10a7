package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
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
	cc, err := operatorConn(c.keys, c.cert, c.key, addr, name)
	if err != nil {
		return nil, nil, err
	}
	return api.NewNodeClient(cc), func() { cc.Close() }, nil
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
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Run a node's health checks; exit 1 when it is unhealthy",
		Long: `Run a node's health checks: enrolled, certificate valid, TPM readable, systemd
running (not degraded), no failed unit, and (reported only) a fresh revocation
list from the hub. Exits 1 when a critical check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var unhealthy bool
			err := nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				h, err := cl.Health(ctx)
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

// parseSince reads --since: a duration back from now (10m, 2h) or an
// RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration (10m, 2h) or an RFC 3339 time", s)
	}
	return t, nil
}

func nodeLogsCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	var unit, since string
	var lines int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Read a node's journal, of one unit or all, bounded; --follow streams new entries",
		Long: fmt.Sprintf(`Read a node's journal: the last --lines entries (at most %d) of --unit, or of
every unit, not older than --since. --follow keeps streaming new entries until
interrupted; with --output json it prints one JSON entry a line.`, api.MaxLogLines),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			req := &api.LogsRequest{Unit: unit, Lines: lines, Since: from}
			if follow {
				c.timeout = 0
			}
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				if follow {
					enc := json.NewEncoder(g.stdout)
					return cl.Follow(ctx, req, func(e *api.LogEntry) error {
						if g.output == OutputJSON {
							return enc.Encode(e)
						}
						printLogEntry(g.stdout, e)
						return nil
					})
				}
				logs, err := cl.Logs(ctx, req)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(logs)
				}
				if logs.Omitted > 0 {
					fmt.Fprintf(g.stderr, "(%d older entries left out to bound the answer)\n", logs.Omitted)
				}
				for i := range logs.Entries {
					printLogEntry(g.stdout, &logs.Entries[i])
				}
				return nil
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	cmd.Flags().StringVarP(&unit, "unit", "u", "", "only this unit (kubedosd, chrony.service…)")
	cmd.Flags().IntVarP(&lines, "lines", "n", api.DefaultLogLines, fmt.Sprintf("entries at most (up to %d)", api.MaxLogLines))
	cmd.Flags().StringVar(&since, "since", "", "not older than this: a duration back from now (10m) or an RFC 3339 time")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new entries")
	return cmd
}

// printLogEntry prints one entry like journalctl's short-iso output.
func printLogEntry(w io.Writer, e *api.LogEntry) {
	who := e.Identifier
	if who == "" {
		who = e.Unit
	}
	if e.PID > 0 {
		who += "[" + strconv.Itoa(e.PID) + "]"
	}
	cut := ""
	if e.Truncated {
		cut = " …"
	}
	fmt.Fprintf(w, "%s %s: %s%s\n", e.Time.Format(time.RFC3339), who, e.Message, cut)
}

func nodeDmesgCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	var lines int
	cmd := &cobra.Command{
		Use:   "dmesg",
		Short: "Read the tail of a node's kernel ring buffer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				d, err := cl.Dmesg(ctx, lines)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(d)
				}
				for _, m := range d.Messages {
					fmt.Fprintf(g.stdout, "[%12.6f] %-6s %s\n", m.Seconds, m.Level, m.Message)
				}
				return nil
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	cmd.Flags().IntVarP(&lines, "lines", "n", api.DefaultLogLines, fmt.Sprintf("messages at most (up to %d)", api.MaxLogLines))
	return cmd
}

func nodePowerCmd(g *globals, verb string) *cobra.Command {
	var c nodeAPIClient
	short := "Reboot a node (admin): it answers, then reboots a moment later"
	if verb == "shutdown" {
		short = "Shut a node down (admin): it answers, then powers off a moment later"
	}
	cmd := &cobra.Command{
		Use:   verb,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				var p *api.Power
				var err error
				if verb == "reboot" {
					p, err = cl.Reboot(ctx)
				} else {
					p, err = cl.Shutdown(ctx)
				}
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(p)
				}
				fmt.Fprintf(g.stdout, "%s at %s\n", p.Action, p.At.Format(time.RFC3339))
				return nil
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	return cmd
}

func nodeConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Read or apply a node's configuration document"}
	var gc nodeAPIClient
	get := &cobra.Command{
		Use:   "get",
		Short: "Print the node's applied configuration (canonical JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &gc, func(ctx context.Context, cl *api.NodeClient) error {
				d, err := cl.ConfigGet(ctx)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(d)
				}
				if !d.Present {
					fmt.Fprintln(g.stderr, "(never configured: the image's settings stand)")
				}
				_, err = io.WriteString(g.stdout, d.Document)
				return err
			})
		},
	}
	gc.addFlags(get, time.Minute)
	var ac nodeAPIClient
	var dryRun bool
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Apply a configuration document (JSON; - for standard input) to a node (operator)",
		Long: `Apply a node configuration document: validated strictly on the node (every
unknown field, duplicate key and wrong value at once, with line:column), stored
on its state partition and applied at once and at every start. --dry-run shows
the diff and changes nothing. The document:

  {
    "apiVersion": "kubedos.io/v1alpha1",
    "kind": "NodeConfig",
    "hostname": "w-1",
    "sysctls": {"net.ipv4.ip_forward": "1"}
  }`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var doc []byte
			var err error
			if args[0] == "-" {
				doc, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), api.MaxConfigBytes+1))
			} else {
				doc, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("read configuration: %w", err)
			}
			return nodeCall(cmd, g, &ac, func(ctx context.Context, cl *api.NodeClient) error {
				res, err := cl.ConfigApply(ctx, string(doc), dryRun)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(res)
				}
				fmt.Fprint(g.stdout, res.Diff)
				switch {
				case !res.Changed:
					fmt.Fprintln(g.stdout, "no change")
				case res.DryRun:
					fmt.Fprintln(g.stdout, "dry run: nothing changed")
				default:
					fmt.Fprintf(g.stdout, "applied (sha256 %s)\n", res.SHA256)
				}
				return nil
			})
		},
	}
	ac.addFlags(apply, time.Minute)
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show the diff; change nothing")
	cmd.AddCommand(get, apply)
	return cmd
}

func nodeDriftCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Show what differs on a node from its applied configuration; exit 1 on drift",
		Long: `Show every difference between what a node should hold and what it holds: the
applied configuration against the running system (hostname, kernel
parameters), the identity files on the state partition, any path under
/var/lib/kubedos that kubedosd does not manage, and any writable mount at or
under /etc (the root is read-only). Exits 1 when there is drift.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var drift bool
			err := nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				d, err := cl.Drift(ctx)
				if err != nil {
					return err
				}
				drift = !d.Clean
				if g.output == OutputJSON {
					return g.writeJSON(d)
				}
				if d.Clean {
					fmt.Fprintln(g.stdout, "no drift")
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tPATH\tEXPECTED\tACTUAL\tDETAIL")
				for _, it := range d.Items {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.Kind, it.Path, it.Expected, it.Actual, strings.Join(strings.Fields(it.Detail), " "))
				}
				return tw.Flush()
			})
			if err == nil && drift {
				return exitError{1}
			}
			return err
		},
	}
	c.addFlags(cmd, time.Minute)
	return cmd
}
