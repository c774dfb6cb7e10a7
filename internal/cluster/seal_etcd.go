package cluster

import (
	"context"
	"fmt"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
)

// The notes a record of a cluster that runs etcd carries when the hub
// holds no snapshot to name: sealing is not refused for it (the first
// snapshot comes 5 minutes after the hub serves on the master, and a
// cluster is often sealed sooner), but the record says so, and `cluster
// seal --force` once a snapshot exists names it.
const (
	EtcdSnapshotNoneYet = "no etcd snapshot yet: the hub on the master takes its first 5 minutes after it starts serving there, then hourly"
	EtcdSnapshotNotKept = "no etcd snapshot: the hub serves off the master, where it takes none"
)

// EtcdSnapshots lists the etcd snapshots the hub keeps (a reader's
// certificate is enough).
func EtcdSnapshots(ctx context.Context, hub *api.AdminClient) (*api.EtcdSnapshots, error) {
	l, err := hub.EtcdSnapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("the hub's etcd snapshots: %w", err)
	}
	return l, nil
}

// newestEtcdSnapshot is the latest taken of snaps (not empty): the hub
// lists them newest first, but the choice must not rest on its order.
func newestEtcdSnapshot(snaps []api.EtcdSnapshot) api.EtcdSnapshot {
	n := snaps[0]
	for _, c := range snaps[1:] {
		if c.Taken.After(n.Taken) {
			n = c
		}
	}
	return n
}

// sealEtcdSnapshot is what a record of s's cluster says of its etcd
// snapshot: nothing for a cluster without etcd, else the newest snapshot
// the hub holds, or a note saying why none. The hub checks it again when
// sealing (hub.checkSealEtcd).
func sealEtcdSnapshot(ctx context.Context, hub *api.AdminClient, s *spec.ClusterSpec) (*manifest.AcceptanceEtcdSnapshot, error) {
	if len(kubeplan.EtcdNodes(s)) == 0 {
		return nil, nil
	}
	l, err := EtcdSnapshots(ctx, hub)
	if err != nil {
		return nil, err
	}
	var out *manifest.AcceptanceEtcdSnapshot
	switch {
	case !l.Kept:
		out = &manifest.AcceptanceEtcdSnapshot{None: EtcdSnapshotNotKept}
	case len(l.Snapshots) == 0:
		out = &manifest.AcceptanceEtcdSnapshot{None: EtcdSnapshotNoneYet}
	default:
		n := newestEtcdSnapshot(l.Snapshots)
		out = &manifest.AcceptanceEtcdSnapshot{Name: n.Name, Member: n.Member, Taken: n.Taken.UTC(), Bytes: n.Bytes, SHA256: n.SHA256,
			Revision: n.Revision}
	}
	if err := out.Check(); err != nil {
		return nil, fmt.Errorf("%w: the hub's newest etcd snapshot: %w", errdefs.ErrInvalid, err)
	}
	return out, nil
}
