package hub

import (
	"errors"
	"io"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/etcdsnap"
)

// apiEtcdSnapshot is how the admin API describes a kept snapshot.
func apiEtcdSnapshot(s etcdsnap.Snapshot) api.EtcdSnapshot {
	return api.EtcdSnapshot{Name: s.Name, Member: s.Member, Taken: s.Taken, Bytes: s.Bytes, SHA256: s.SHA256, Revision: s.Revision}
}

type snapshotsService struct{ s *Server }

// Download sends an etcd snapshot: its description, then its bytes in
// chunks, the ones the hub hashed for the description.
func (d snapshotsService) Download(r *api.EtcdSnapshotRequest, out api.SnapshotSender) error {
	ctx := out.Context()
	pe, err := d.s.authenticate(ctx)
	if err != nil {
		return err
	}
	s, f, err := d.s.hub.OpenEtcdSnapshot(ctx, pe, r.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	desc := apiEtcdSnapshot(s)
	if err := out.Send(&api.EtcdSnapshotChunk{Snapshot: &desc}); err != nil {
		return err
	}
	buf := make([]byte, api.SnapshotChunkBytes)
	for left := s.Bytes; left > 0; {
		n, err := io.ReadFull(f, buf[:min(left, int64(len(buf)))])
		if err != nil {
			// The hub hashed these bytes a moment ago: a short read now
			// is the disk's fault, and the client's digest check would
			// refuse what was sent anyway.
			return errors.Join(errors.New("etcd snapshot "+s.Name+": reading it again"), err)
		}
		if err := out.Send(&api.EtcdSnapshotChunk{Data: buf[:n]}); err != nil {
			return err
		}
		left -= int64(n)
	}
	return nil
}
