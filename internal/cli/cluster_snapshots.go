package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/spf13/cobra"
)

// newClusterSnapshotsCmd is `kubedos cluster snapshots`: flags → the hub's
// admin service (cluster.EtcdSnapshots) → rendering.
func newClusterSnapshotsCmd(g *globals) *cobra.Command {
	var c hubClient
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List the etcd snapshots the hub keeps on the master: name, member, time, size, SHA-256",
		Long: `List the etcd snapshots the cluster's hub keeps, newest first.

The hub on the master of a cluster that runs etcd (Kubernetes enabled) asks
an etcd member for a snapshot 5 minutes after it starts serving there and
every hour after, checks it against the SHA-256 etcd appends to it, and keeps
the newest 24 on the master's data partition:

  /data/kubedos/etcd-snapshots/etcd-<UTC time>-<member>.db

Each line is one file:

  NAME     the file name: when it was taken (UTC) and the member it came from
  MEMBER   the etcd member that streamed it
  TAKEN    when (RFC 3339, UTC; to the second)
  SIZE     its size (MiB; bytes with -o json)
  REVISION the etcd revision it holds, read from the file ("-": unknown)
  SHA256   the SHA-256 of the whole file, as the hub reads it (the digest a
           sealed acceptance record names)

kubedos cluster seal names the newest of them in the acceptance record, and
the hub refuses a record naming a snapshot it does not hold with that digest
(docs/acceptance.md); kubedos bundle verify shows the one a bundle's record
names. The hub answers names, times, sizes and digests, never the bytes; a
reader's certificate is enough (--cert/--key).

A hub that takes no snapshots (one serving off the master, as while cluster up
boots the cluster, or a cluster without etcd) says so; one that has taken
none yet says that. Both exit 0.

With -o json: {"kept": bool, "snapshots": [{"name", "member", "taken",
"bytes", "sha256", "revision"}]} ("revision" left out when unknown).

Exit status: 0 answered; 1 the hub did not answer or refused the
certificate. Copying a snapshot off the master and restoring etcd from one
are not provided yet (docs/kubernetes.md).`,
		Example: "  kubedos cluster snapshots --spec examples/local-ha.yaml\n" +
			"  kubedos cluster snapshots --hub 10.50.0.10:7443 --cert reader.crt --key reader.key -o json",
		Args: cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			l, err := cluster.EtcdSnapshots(cmd.Context(), cl)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(l)
			}
			switch {
			case !l.Kept:
				_, err := fmt.Fprintf(g.stdout, "the hub at %s keeps no etcd snapshots: it serves off the master, or the cluster runs no etcd\n", c.addr)
				return err
			case len(l.Snapshots) == 0:
				_, err := fmt.Fprintf(g.stdout, "the hub at %s has no etcd snapshot yet: its first is taken 5 minutes after it starts serving on the master, then hourly\n", c.addr)
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMEMBER\tTAKEN\tSIZE\tREVISION\tSHA256")
			for _, s := range l.Snapshots {
				rev := "-"
				if s.Revision > 0 {
					rev = fmt.Sprint(s.Revision)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MiB\t%s\t%s\n", s.Name, s.Member, s.Taken.UTC().Format(time.RFC3339), float64(s.Bytes)/(1<<20), rev, s.SHA256)
			}
			return tw.Flush()
		}),
	}
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "find the hub of this spec's cluster (where cluster up left it) instead of --hub")
	return cmd
}
