package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/spf13/cobra"
)

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
