package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
)

// DownloadEtcdSnapshot copies an etcd snapshot the hub keeps off the
// master into out: the one named, or the newest when name is "". An out
// that is a directory gets the snapshot's own name in it. The file
// appears only whole and checked (its size and SHA-256 equal the hub's
// description, mode 0600: it holds every Kubernetes Secret); a failed or
// cut download leaves nothing at out. progress, when set, is told the
// description and then the bytes written so far. Admin.
func DownloadEtcdSnapshot(ctx context.Context, hub *api.AdminClient, name, out string,
	progress func(s api.EtcdSnapshot, written int64)) (*api.EtcdSnapshot, string, error) {
	if name == "" {
		l, err := EtcdSnapshots(ctx, hub)
		if err != nil {
			return nil, "", err
		}
		switch {
		case !l.Kept:
			return nil, "", fmt.Errorf("%w: the hub keeps no etcd snapshots: it serves off the master, or the cluster runs no etcd", errdefs.ErrPrecondition)
		case len(l.Snapshots) == 0:
			return nil, "", fmt.Errorf("%w: the hub has no etcd snapshot yet (its first is taken 5 minutes after it serves on the master)", errdefs.ErrNotFound)
		}
		name = newestEtcdSnapshot(l.Snapshots).Name
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		out = filepath.Join(out, filepath.Base(name))
	}
	if fi, err := os.Stat(filepath.Dir(out)); err != nil || !fi.IsDir() {
		return nil, "", fmt.Errorf("%w: %s: no such directory to write the snapshot in", errdefs.ErrInvalid, filepath.Dir(out))
	}
	var desc *api.EtcdSnapshot
	err := durable.WriteFrom(out, 0o600, func(w io.Writer) error {
		var cur api.EtcdSnapshot
		var err error
		desc, err = hub.DownloadEtcdSnapshot(ctx, name, w, func(s api.EtcdSnapshot) error {
			cur = s
			if s.Name != name {
				return fmt.Errorf("%w: asked for %s, the hub describes %q", api.ErrSnapshotMismatch, name, clipName(s.Name))
			}
			if progress != nil {
				progress(s, 0)
			}
			return nil
		}, func(n int64) {
			if progress != nil {
				progress(cur, n)
			}
		})
		if err != nil {
			return fmt.Errorf("etcd snapshot %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return desc, out, nil
}
