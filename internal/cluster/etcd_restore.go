package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// EtcdRestoreTarget is what an etcd restore acts on: the hub holding the
// snapshots, the etcd members (every one is restored), the nodes whose
// API server asks members on other nodes (restarted once the members
// serve), and a way to each node's API.
type EtcdRestoreTarget struct {
	Hub     *api.AdminClient
	Members []string
	// APIServers run an API server without an etcd member of their own.
	APIServers []string
	Dial       func(name string) (*api.NodeClient, func(), error)
}

// EtcdRestoreOptions: Snapshot names the hub's snapshot ("" the newest);
// Wait bounds the wait for the restored members to be healthy (Every
// paces its polls); Now names the restore's token (default time.Now).
type EtcdRestoreOptions struct {
	Snapshot    string
	Wait, Every time.Duration
	Events      Events
	Now         func() time.Time
}

// EtcdRestoreReport is what a restore did, member by member.
type EtcdRestoreReport struct {
	Snapshot api.EtcdSnapshot         `json:"snapshot"`
	Token    string                   `json:"token"`
	Members  []*api.EtcdRestoreResult `json:"members"`
	// Restarted are the API servers without a member of their own,
	// restarted on the restored keyspace.
	Restarted []string `json:"restarted,omitempty"`
	// DownloadSeconds, RestoreSeconds and HealthySeconds time the copy off
	// the master, the members' restores and the wait for their health.
	DownloadSeconds float64 `json:"downloadSeconds"`
	RestoreSeconds  float64 `json:"restoreSeconds"`
	HealthySeconds  float64 `json:"healthySeconds"`
}

// restoreToken is a token no earlier cluster had: the time of the restore
// and the snapshot's digest, a DNS label as etcd's token flag and the
// node's check want it.
func restoreToken(now time.Time, sha string) string {
	return "restore-" + strings.ToLower(now.UTC().Format("20060102T150405Z")) + "-" + sha[:12]
}

// RestoreEtcd restores every etcd member from one snapshot the hub keeps:
// it copies the snapshot off the master (checked against the hub's
// digest), asks each member's node to be reachable before it touches any,
// streams the snapshot to each in turn with one new token (each node
// checks it, stops its API server and etcd, restores, keeps its old data
// and queues etcd's start), waits until every member reports healthy, and
// restarts the API servers that ask members on other nodes. Every write
// since the snapshot is gone. A member that fails stops the restore,
// naming the members already restored: running it again restores them
// all with a new token. Admin.
func RestoreEtcd(ctx context.Context, t EtcdRestoreTarget, o EtcdRestoreOptions) (*EtcdRestoreReport, error) {
	ev := events{o.Events}
	if len(t.Members) == 0 {
		return nil, fmt.Errorf("%w: the cluster runs no etcd", errdefs.ErrPrecondition)
	}
	if o.Snapshot != "" && !etcdsnap.ValidName(o.Snapshot) {
		return nil, fmt.Errorf("%w: %q is not an etcd snapshot's name (etcd-<UTC time>-<member>.db; kubedos cluster snapshots lists them)", errdefs.ErrInvalid, clipName(o.Snapshot))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// Every member reachable first: a restore stopped halfway leaves
	// members of two clusters.
	for _, n := range t.Members {
		if err := reachable(ctx, t.Dial, n); err != nil {
			return nil, fmt.Errorf("etcd member %s: %w; nothing was restored", n, err)
		}
	}
	tmp, err := os.MkdirTemp("", "kubedos-etcd-restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // it holds every Secret
	began := time.Now()
	snap, path, err := DownloadEtcdSnapshot(ctx, t.Hub, o.Snapshot, tmp, func(s api.EtcdSnapshot, n int64) {
		if n == 0 {
			ev.msg("etcd restore: copying %s (%.1f MiB, member %s, taken %s) off the master", s.Name, float64(s.Bytes)/(1<<20), s.Member, s.Taken.UTC().Format(time.RFC3339))
		}
	})
	if err != nil {
		return nil, err
	}
	r := &EtcdRestoreReport{Snapshot: *snap, Token: restoreToken(o.Now(), snap.SHA256), DownloadSeconds: time.Since(began).Seconds()}
	begin := api.EtcdRestoreBegin{Snapshot: snap.Name, Bytes: snap.Bytes, SHA256: snap.SHA256, Token: r.Token}
	began = time.Now()
	for _, n := range t.Members {
		ev.msg("etcd restore: %s: sending %s and restoring its member (token %s)", n, snap.Name, r.Token)
		res, err := restoreMember(ctx, t.Dial, n, begin, path)
		if err != nil {
			done := make([]string, 0, len(r.Members))
			for _, m := range r.Members {
				done = append(done, m.Node)
			}
			return r, fmt.Errorf("etcd member %s: %w (restored before it: %s; run the restore again to restore every member with a new token)",
				n, err, orNone(done))
		}
		ev.msg("etcd restore: %s: restored, etcd's start queued (%s)", n, strings.Join(res.Steps, "; "))
		r.Members = append(r.Members, res)
	}
	r.RestoreSeconds = time.Since(began).Seconds()
	began = time.Now()
	wait := o.Wait
	if wait == 0 {
		wait = 10 * time.Minute
	}
	gate := QuorumGate{Members: t.Members, Wait: wait, Every: o.Every, Events: o.Events, Health: nodesEtcdHealth(t.Dial)}
	if err := gate.wait(ctx, t.Members, "after the restore"); err != nil {
		return r, err
	}
	r.HealthySeconds = time.Since(began).Seconds()
	for _, n := range t.APIServers {
		if err := restartAPIServer(ctx, t.Dial, n); err != nil {
			return r, fmt.Errorf("the members are restored and healthy; restarting %s's API server: %w", n, err)
		}
		r.Restarted = append(r.Restarted, n)
	}
	return r, nil
}

func reachable(ctx context.Context, dial func(string) (*api.NodeClient, func(), error), name string) error {
	_, err := callNode(ctx, func() (*api.NodeClient, func(), error) { return dial(name) }, 30*time.Second, (*api.NodeClient).Version)
	return err
}

func restoreMember(ctx context.Context, dial func(string) (*api.NodeClient, func(), error), name string, begin api.EtcdRestoreBegin, path string) (*api.EtcdRestoreResult, error) {
	cl, done, err := dial(name)
	if err != nil {
		return nil, err
	}
	defer done()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return cl.EtcdRestore(ctx, begin, f)
}

func restartAPIServer(ctx context.Context, dial func(string) (*api.NodeClient, func(), error), name string) error {
	_, err := callNode(ctx, func() (*api.NodeClient, func(), error) { return dial(name) }, 2*time.Minute,
		func(cl *api.NodeClient, ctx context.Context) (*api.Unit, error) {
			return cl.RestartService(ctx, kubeplan.UnitName(kubeplan.APIServer))
		})
	return err
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// EtcdRestoreTargets are s's etcd members and the nodes running an API
// server without a member of their own.
func EtcdRestoreTargets(s *spec.ClusterSpec) (members, apiServers []string, err error) {
	for _, n := range kubeplan.EtcdNodes(s) {
		members = append(members, n.Name)
	}
	for _, n := range s.Topology.Nodes {
		p, err := kubeplan.For(s, n.Name)
		if err != nil {
			return nil, nil, err
		}
		if p != nil && slices.Contains(p.Components, kubeplan.APIServer) && !slices.Contains(members, n.Name) {
			apiServers = append(apiServers, n.Name)
		}
	}
	return members, apiServers, nil
}

// RestoreEtcd restores the cluster's etcd from a snapshot its hub keeps
// (RestoreEtcd), reaching each node at the API address cluster up
// recorded.
func (c *Cluster) RestoreEtcd(ctx context.Context, o EtcdRestoreOptions) (*EtcdRestoreReport, error) {
	admin, doneHub, err := c.upHub()
	if err != nil {
		return nil, err
	}
	defer doneHub()
	if o.Events == nil {
		o.Events = c.Events
	}
	members, apis, err := EtcdRestoreTargets(c.Spec)
	if err != nil {
		return nil, err
	}
	return RestoreEtcd(ctx, EtcdRestoreTarget{Hub: admin, Members: members, APIServers: apis, Dial: c.dialNode}, o)
}
