package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/spf13/cobra"
)

func nodePlanesCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	cmd := &cobra.Command{
		Use:   "planes",
		Short: "Show a node's WireGuard planes: address, peers, last handshake, traffic",
		Long: `Show the WireGuard planes (DESIGN.md §5) of a node as its kernel reports them:
each plane's interface (wg-control, wg-obs, wg-kubernetes), its address and
listen port, and every peer with its endpoint, allowed IPs, latest handshake
and bytes received and sent. The master is the hub of every plane and lists
each node that joined; any other node lists the master alone.

A node joins through the hub every 10 s: it registers the public half of its
plane keys (made once it enrolled, kept on the state partition, never sent) and
applies the peers the hub answers with. A revoked or fenced node drops off
the master's planes at the master's next join.

Exits 1 when the node's last join failed or an interface is missing or down.`,
		Example: `  kubedos node planes --node 10.20.0.10:7444 --name master
  kubedos node planes --name w-1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var bad bool
			err := nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				p, err := cl.Planes(ctx)
				if err != nil {
					return err
				}
				bad = p.Error != "" || len(p.Interfaces) == 0
				for _, st := range p.Interfaces {
					bad = bad || st.Error != "" || !st.Up
				}
				if g.output == OutputJSON {
					return g.writeJSON(p)
				}
				printPlanes(g, p, time.Now())
				return nil
			})
			if err == nil && bad {
				return exitError{1}
			}
			return err
		},
	}
	c.addFlags(cmd, time.Minute)
	return cmd
}

func printPlanes(g *globals, p *api.Planes, now time.Time) {
	if p.Joined.IsZero() {
		fmt.Fprintln(g.stdout, "joined: never")
	} else {
		fmt.Fprintf(g.stdout, "joined: %s ago\n", now.Sub(p.Joined).Round(time.Second))
	}
	if p.Error != "" {
		fmt.Fprintf(g.stdout, "error:  %s\n", p.Error)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLANE\tINTERFACE\tADDRESS\tPORT\tPEER\tENDPOINT\tALLOWED\tHANDSHAKE\tRX\tTX")
	for _, st := range p.Interfaces {
		state := strings.Join(st.Addresses, ",")
		switch {
		case st.Error != "":
			state = "error: " + st.Error
		case !st.Up:
			state += " (down)"
		}
		if len(st.Peers) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t-\t\t\t\t\t\n", st.Plane, st.Interface, state, st.Port)
		}
		for _, pe := range st.Peers {
			hs := "never"
			if !pe.LatestHandshake.IsZero() {
				hs = now.Sub(pe.LatestHandshake).Round(time.Second).String() + " ago"
			}
			name := pe.Name
			if name == "" && len(pe.PublicKey) >= 8 {
				name = pe.PublicKey[:8] + "…" // a peer the node was not told of
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\n", st.Plane, st.Interface, state, st.Port, name, pe.Endpoint,
				strings.Join(pe.AllowedIPs, ","), hs, pe.RxBytes, pe.TxBytes)
		}
	}
	_ = tw.Flush()
}
