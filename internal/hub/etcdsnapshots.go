package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
)

// EtcdSnapshots are the etcd snapshots a hub keeps (etcdsnap.Dir: the hub
// on the master of a cluster that runs etcd takes them, issue 16).
type EtcdSnapshots interface {
	// List is every kept snapshot, newest first.
	List() ([]etcdsnap.Snapshot, error)
	// Check is one snapshot with its digest computed now; a name that is
	// not a snapshot's wraps etcdsnap.ErrBadName, one not kept
	// fs.ErrNotExist.
	Check(name string) (etcdsnap.Snapshot, error)
	// Open is one snapshot, its digest computed now, and its bytes (those
	// hashed) to read from the start. Errors as Check's.
	Open(name string) (etcdsnap.Snapshot, io.ReadCloser, error)
}

// MaxEtcdSnapshotsListed bounds an answer; the hub keeps 24.
const MaxEtcdSnapshotsListed = 100

// EtcdSnapshotList is what a hub says of its etcd snapshots.
type EtcdSnapshotList struct {
	// Kept: this hub keeps etcd snapshots (false: it takes none where it
	// serves, off the master or for a cluster without etcd).
	Kept bool
	// Snapshots are the newest MaxEtcdSnapshotsListed, newest first.
	Snapshots []etcdsnap.Snapshot
}

// EtcdSnapshots lists the etcd snapshots this hub keeps: names, members,
// times, sizes and digests, never their bytes. Reader.
func (h *Hub) EtcdSnapshots(ctx context.Context, peer pki.Peer) (EtcdSnapshotList, error) {
	if err := h.begin(ctx, peer, pki.ActionRead, "etcd-snapshots"); err != nil {
		return EtcdSnapshotList{}, err
	}
	if h.opt.EtcdSnapshots == nil {
		return EtcdSnapshotList{}, nil
	}
	s, err := h.opt.EtcdSnapshots.List()
	if err != nil {
		return EtcdSnapshotList{}, fmt.Errorf("etcd snapshots: %w", err)
	}
	return EtcdSnapshotList{Kept: true, Snapshots: s[:min(len(s), MaxEtcdSnapshotsListed)]}, nil
}

// TakeEtcdSnapshot takes an etcd snapshot now (before a change an
// operator may want to undo: an upgrade, a restore drill) and keeps it
// with the hourly ones; it answers its name, size and digest. Operator:
// the bytes stay on the master. Audited either way.
func (h *Hub) TakeEtcdSnapshot(ctx context.Context, peer pki.Peer) (etcdsnap.Snapshot, error) {
	const target = "etcd-snapshots"
	if err := h.begin(ctx, peer, pki.ActionEtcdSnapshotTake, target); err != nil {
		return etcdsnap.Snapshot{}, err
	}
	if h.opt.TakeEtcdSnapshot == nil {
		err := failf(ErrState, "this hub takes no etcd snapshots: it serves off the master, or the cluster runs no etcd")
		return etcdsnap.Snapshot{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionEtcdSnapshotTake), target, err))
	}
	s, err := h.opt.TakeEtcdSnapshot(ctx)
	if err != nil {
		err = fmt.Errorf("etcd snapshot: %w", err)
		return etcdsnap.Snapshot{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionEtcdSnapshotTake), target, err))
	}
	err = h.opt.Store.Record(AuditEntry{Time: h.now(), Actor: peer.Actor(), Action: string(pki.ActionEtcdSnapshotTake), Target: s.Name,
		Outcome: OutcomeOK, Detail: fmt.Sprintf("%d bytes, sha256:%s, from member %s", s.Bytes, s.SHA256, s.Member)})
	return s, err
}

// OpenEtcdSnapshot is the named etcd snapshot this hub keeps and its bytes
// for peer to carry off the master (the caller closes them). Admin: a
// snapshot holds every Kubernetes Secret. Audited either way, the download
// with the file's size and SHA-256.
func (h *Hub) OpenEtcdSnapshot(ctx context.Context, peer pki.Peer, name string) (etcdsnap.Snapshot, io.ReadCloser, error) {
	target := "etcd-snapshots"
	if etcdsnap.ValidName(name) {
		target = name
	}
	if err := h.begin(ctx, peer, pki.ActionEtcdSnapshotRead, target); err != nil {
		return etcdsnap.Snapshot{}, nil, err
	}
	fail := func(err error) (etcdsnap.Snapshot, io.ReadCloser, error) {
		return etcdsnap.Snapshot{}, nil, errors.Join(err, h.record(peer.Actor(), string(pki.ActionEtcdSnapshotRead), target, err))
	}
	if h.opt.EtcdSnapshots == nil {
		return fail(failf(ErrState, "this hub keeps no etcd snapshots: it serves off the master, or the cluster runs no etcd"))
	}
	s, r, err := h.opt.EtcdSnapshots.Open(name)
	switch {
	case errors.Is(err, etcdsnap.ErrBadName):
		return fail(failf(ErrInvalid, "etcd snapshot %q: not a snapshot name (etcd-<UTC time>-<member>.db)", clip(name)))
	case errors.Is(err, fs.ErrNotExist):
		return fail(failf(ErrNotFound, "etcd snapshot %s: this hub does not hold it (kubedos cluster snapshots lists those it does)", name))
	case err != nil:
		return fail(fmt.Errorf("etcd snapshot %s: %w", name, err))
	}
	err = h.opt.Store.Record(AuditEntry{Time: h.now(), Actor: peer.Actor(), Action: string(pki.ActionEtcdSnapshotRead), Target: s.Name,
		Outcome: OutcomeOK, Detail: fmt.Sprintf("%d bytes, sha256:%s, from member %s", s.Bytes, s.SHA256, s.Member)})
	if err != nil {
		r.Close()
		return etcdsnap.Snapshot{}, nil, err // nothing leaves the hub unaudited
	}
	return s, r, nil
}

// runsEtcd reports whether this hub's cluster runs etcd (its spec, when it
// has one, enables Kubernetes).
func (h *Hub) runsEtcd() bool {
	return h.opt.Spec != nil && len(kubeplan.EtcdNodes(h.opt.Spec)) > 0
}

// checkSealEtcd checks the etcd snapshot a record anchors on: a record of
// a cluster that runs etcd says which; a named one is a file this hub
// holds with that digest, size, member and time; a note that there is none
// holds only if this hub kept none taken before the record's gate began
// (one taken since does not make it a lie). It returns the words the seal
// entry names it with ("" for none).
func (h *Hub) checkSealEtcd(a *manifest.Acceptance) (string, error) {
	s := a.EtcdSnapshot
	switch {
	case s == nil && h.runsEtcd():
		return "", failf(ErrInvalid, "acceptance record of a cluster that runs etcd names no etcd snapshot (etcdSnapshot)")
	case s == nil:
		return "", nil
	case s.None != "":
		if h.opt.EtcdSnapshots != nil {
			kept, err := h.opt.EtcdSnapshots.List()
			if err != nil {
				return "", fmt.Errorf("etcd snapshots: %w", err)
			}
			for _, k := range kept {
				if k.Taken.Before(a.Time) {
					return "", failf(ErrInvalid, "acceptance record says no etcd snapshot, but this hub holds %s (taken %s, before the record)",
						k.Name, k.Taken.Format("2006-01-02T15:04:05Z"))
				}
			}
		}
		return fmt.Sprintf("no etcd snapshot (%s)", clip(s.None)), nil
	case h.opt.EtcdSnapshots == nil:
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s; this hub keeps no etcd snapshots", clip(s.Name))
	}
	got, err := h.opt.EtcdSnapshots.Check(s.Name)
	switch {
	case errors.Is(err, etcdsnap.ErrBadName):
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %q: not a snapshot name", clip(s.Name))
	case errors.Is(err, fs.ErrNotExist):
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s, which this hub does not hold", s.Name)
	case err != nil:
		return "", fmt.Errorf("etcd snapshot %s: %w", s.Name, err)
	case got.SHA256 != s.SHA256:
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s with sha256 %s; this hub's is %s", s.Name, clip(s.SHA256), got.SHA256)
	case got.Bytes != s.Bytes:
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s of %d bytes; this hub's is %d", s.Name, s.Bytes, got.Bytes)
	case got.Member != s.Member:
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s from member %q; its name says %s", s.Name, clip(s.Member), got.Member)
	case s.Revision != 0 && got.Revision != s.Revision:
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s at revision %d; the file holds %d", s.Name, s.Revision, got.Revision)
	case !got.Taken.Equal(s.Taken):
		return "", failf(ErrInvalid, "acceptance record names etcd snapshot %s taken %s; its name says %s", s.Name,
			s.Taken.UTC().Format("2006-01-02T15:04:05Z"), got.Taken.Format("2006-01-02T15:04:05Z"))
	}
	return fmt.Sprintf("etcd snapshot %s sha256:%s", got.Name, got.SHA256), nil
}
