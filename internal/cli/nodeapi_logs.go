package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/spf13/cobra"
)

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
