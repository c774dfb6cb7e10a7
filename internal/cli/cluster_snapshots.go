package cli

import (
	"fmt"
	"strings"
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

kubedos cluster snapshots take has the hub take one now (operator), get copies
one off the master (admin), restore restores every etcd member from one
(admin).

Exit status: 0 answered; 1 the hub did not answer or refused the
certificate.`,
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
	cmd.AddCommand(newClusterSnapshotsTakeCmd(g), newClusterSnapshotsGetCmd(g), newClusterSnapshotsRestoreCmd(g))
	return cmd
}

// newClusterSnapshotsTakeCmd is `kubedos cluster snapshots take`: flags →
// the hub's admin service → rendering.
func newClusterSnapshotsTakeCmd(g *globals) *cobra.Command {
	var c hubClient
	cmd := &cobra.Command{
		Use:   "take",
		Short: "Have the hub take an etcd snapshot now, kept on the master with the hourly ones",
		Long: `Have the cluster's hub take an etcd snapshot now, beside the ones it takes every
hour: before a change you may want to undo (an upgrade, a bulk delete, a
restore drill). The hub asks the members in spec order, keeps the first whole
snapshot whose appended SHA-256 checks, in
/data/kubedos/etcd-snapshots/etcd-<UTC time>-<member>.db on the master, and
prunes to the newest 24 as after its hourly ones (one at a time: a take
waits for a running one).

The bytes stay on the master, so an operator certificate is enough
(--cert/--key); the hub audits each take (etcd.snapshot.take) with the file's
digest. A hub that takes none (off the master, or a cluster without etcd)
refuses.

With -o json: {"name", "member", "taken", "bytes", "sha256", "revision"}.

Exit status: 0 taken and kept; 1 refused, no member streamed a whole
snapshot, or the hub did not answer.`,
		Example: "  kubedos cluster snapshots take --spec examples/local-ha.yaml\n" +
			"  kubedos cluster snapshots take --hub 10.50.0.10:7443 --cert operator.crt --key operator.key -o json",
		Args: cobra.NoArgs,
		RunE: c.runAdmin(g, func(cmd *cobra.Command, _ []string, cl *api.AdminClient) error {
			s, err := cl.TakeEtcdSnapshot(cmd.Context())
			if err != nil {
				return fmt.Errorf("etcd snapshot: %w", err)
			}
			if g.output == OutputJSON {
				return g.writeJSON(s)
			}
			_, err = fmt.Fprintf(g.stdout, "%s\tmember %s\t%d bytes\tsha256:%s\n", s.Name, s.Member, s.Bytes, s.SHA256)
			return err
		}),
	}
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "find the hub of this spec's cluster (where cluster up left it) instead of --hub")
	return cmd
}

// newClusterSnapshotsGetCmd is `kubedos cluster snapshots get`: flags →
// cluster.DownloadEtcdSnapshot → rendering.
func newClusterSnapshotsGetCmd(g *globals) *cobra.Command {
	var c hubClient
	var out string
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "Copy an etcd snapshot off the master, checked against the hub's SHA-256",
		Long: `Copy an etcd snapshot the hub keeps on the master to this machine: the one
named (a NAME from kubedos cluster snapshots), or the newest.

The hub opens the file, computes its SHA-256 and sends that first, then the
bytes it hashed, in 1 MiB messages over its TLS admin service. The file is
written beside --out under a temporary name, checked (the size and the
SHA-256 must equal what the hub said), flushed and renamed into place: a
download that fails or is cut off leaves nothing at --out. It is written
with mode 0600.

A snapshot holds the whole etcd keyspace, every Kubernetes Secret among it:
an admin certificate is needed (--cert/--key, or the keys directory's), and
the hub audits each download (etcd.snapshot.read, with the file's digest) and
each refusal. Keep the copy as you keep the recovery bundle: the SHA-256 a
sealed acceptance record names (kubedos bundle verify shows it) is the one
printed here, so the copy can be matched to the accepted cluster.

--out is a file, or a directory to write NAME in (default: the current
directory). Progress goes to stderr.

With -o json: {"name", "member", "taken", "bytes", "sha256", "revision",
"path"}.

Exit status: 0 written and checked; 1 refused (not an admin, no such
snapshot, a hub that keeps none), the hub did not answer, or the bytes did
not match (nothing written).`,
		Example: "  kubedos cluster snapshots get --spec examples/local-ha.yaml --out /srv/recovery/\n" +
			"  kubedos cluster snapshots get etcd-20261206T160000Z-cp-2.db --hub 10.50.0.10:7443 --keys keys --out cp-2.db",
		Args: cobra.MaximumNArgs(1),
		RunE: c.runAdmin(g, func(cmd *cobra.Command, args []string, cl *api.AdminClient) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			pr := newProgress(g.stderr)
			step := int64(0)
			s, path, err := cluster.DownloadEtcdSnapshot(cmd.Context(), cl, name, out, func(s api.EtcdSnapshot, n int64) {
				if n == 0 {
					pr.Step("%s: %.1f MiB from member %s, taken %s", s.Name, float64(s.Bytes)/(1<<20), s.Member, s.Taken.UTC().Format(time.RFC3339))
					return
				}
				pr.Update("%s: %.1f of %.1f MiB", s.Name, float64(n)/(1<<20), float64(s.Bytes)/(1<<20))
				if n-step >= 64<<20 && n < s.Bytes {
					step = n
					if !pr.tty {
						pr.Step("%s: %.0f MiB of %.0f", s.Name, float64(n)/(1<<20), float64(s.Bytes)/(1<<20))
					}
				}
			})
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(struct {
					api.EtcdSnapshot
					Path string `json:"path"`
				}{*s, path})
			}
			pr.Step("%s: written and checked", s.Name)
			_, err = fmt.Fprintf(g.stdout, "%s\t%d bytes\tsha256:%s\n", path, s.Bytes, s.SHA256)
			return err
		}),
	}
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "find the hub of this spec's cluster (where cluster up left it) instead of --hub")
	cmd.Flags().StringVar(&out, "out", ".", "file to write, or a directory to write the snapshot's own name in")
	return cmd
}

// newClusterSnapshotsRestoreCmd is `kubedos cluster snapshots restore`:
// flags → cluster.RestoreEtcd → rendering.
func newClusterSnapshotsRestoreCmd(g *globals) *cobra.Command {
	var (
		f    clusterFlags
		yes  bool
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restore SPEC [NAME] --yes",
		Short: "Restore every etcd member from a snapshot the hub keeps (every write since it is lost)",
		Long: `Restore the cluster's etcd from a snapshot the hub keeps on the master: the one
named (a NAME from kubedos cluster snapshots), or the newest. For a keyspace
damaged beyond what etcd repairs itself: objects deleted by mistake, a
corrupted member's data spread by raft, every member's disk lost.

etcd cannot roll a running cluster back, so every member is restored, as a
new cluster with a token no earlier one had:

  1. each member's node must answer on its API before any is touched;
  2. the snapshot is copied off the master through the hub (checked against
     the hub's SHA-256) into a temporary file here, removed at the end;
  3. member by member, in spec order, the snapshot is streamed to the node,
     which checks its size and SHA-256 before it stops anything, then stops
     its API server (stacked) and etcd, has etcdutl restore it for the
     spec's members (the revision moved on by a billion and marked
     compacted, so the API servers' caches and every watcher list again),
     keeps the data before as /data/etcd.pre-restore, puts the restored
     data in place and queues etcd's start (a restored member serves once
     a quorum of members is restored, so no node waits for its own);
  4. every member must then report healthy (node health, check etcd) within
     --wait; the stacked API servers start again by themselves once theirs
     is;
  5. the API servers on nodes without a member of their own are restarted.

Every write since the snapshot was taken is lost: Kubernetes objects, leases,
Secrets. Without --yes nothing is done. To go back to the keyspace the
cluster was accepted with, name the snapshot its acceptance record names
(kubedos bundle verify shows it).

A member that fails stops the restore, naming the members already restored
(their etcd started on the snapshot); the others keep their data. Run the
command again: it restores every member again with a new token. Each
node's previous data stays in /data/etcd.pre-restore until the next
restore. The restore needs etcd 3.5's etcdutl on the nodes (Debian trixie's
etcd-server; bookworm's 3.4 has none, and the node says so).

Needs an admin certificate (the node API's etcd.restore and the hub's
etcd.snapshot.read); each node audits its restore. Progress goes to stderr.

With -o json: {"snapshot": {...}, "token", "members": [{"node", "snapshot",
"sha256", "bytes", "token", "dataDir", "previous", "steps"}], "restarted",
"downloadSeconds", "restoreSeconds", "healthySeconds"}.

Exit status: 0 every member restored and healthy, the other API servers
restarted; 1 refused or failed (the error says how far it went).`,
		Example: "  kubedos cluster snapshots restore examples/local-ha.yaml --keys keys --yes\n" +
			"  kubedos cluster snapshots restore cluster.yaml etcd-20261207T210000Z-cp-1.db --keys keys --yes -o json",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			cfg, err := f.load(args[0], yes, g.events())
			if err != nil {
				return err
			}
			if !yes {
				members, _, err := cluster.EtcdRestoreTargets(cfg.Spec)
				if err != nil {
					return err
				}
				which := "the newest snapshot"
				if name != "" {
					which = name
				}
				return fmt.Errorf("restoring etcd replaces the data of every member (%s) with %s: every write since it was taken is lost; add --yes to go ahead",
					orNoneList(members), which)
			}
			r, err := cluster.New(cfg).RestoreEtcd(cmd.Context(), cluster.EtcdRestoreOptions{Snapshot: name, Wait: wait})
			if g.output == OutputJSON && r != nil {
				if jerr := g.writeJSON(r); err == nil {
					err = jerr
				}
			}
			if err != nil || g.output == OutputJSON {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "snapshot:\t%s (sha256:%s, %d bytes, taken %s)\n", r.Snapshot.Name, r.Snapshot.SHA256, r.Snapshot.Bytes, r.Snapshot.Taken.UTC().Format(time.RFC3339))
			fmt.Fprintf(tw, "token:\t%s\n", r.Token)
			for _, m := range r.Members {
				fmt.Fprintf(tw, "restored:\t%s (previous data in %s)\n", m.Node, orNoneList([]string{m.Previous}))
			}
			if len(r.Restarted) > 0 {
				fmt.Fprintf(tw, "API servers restarted:\t%s\n", orNoneList(r.Restarted))
			}
			fmt.Fprintf(tw, "time:\tcopy %.1f s, restore %.1f s, members healthy %.1f s\n", r.DownloadSeconds, r.RestoreSeconds, r.HealthySeconds)
			return tw.Flush()
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&yes, "yes", false, "restore: every write since the snapshot is lost")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for every restored member to report healthy")
	return cmd
}

func orNoneList(s []string) string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
