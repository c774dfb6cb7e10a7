package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
)

// SnapshotsService hands an etcd snapshot the hub keeps to an admin: the
// bytes leave the master, so the cluster's data (every Secret in it) can
// be carried off it. A service of its own because it streams.
const SnapshotsService = "kubedos.hub.v1.EtcdSnapshots"

// SnapshotChunkBytes is the payload of one EtcdSnapshotChunk.
const SnapshotChunkBytes = 1 << 20

// EtcdSnapshotRequest names the snapshot to download (a name from
// EtcdSnapshots).
type EtcdSnapshotRequest struct {
	Name string `json:"name"`
}

// EtcdSnapshotChunk is one message of a download: the first carries the
// snapshot's description (its size and the SHA-256 the hub computed from
// the open file it then sends), the rest Data in order, at most
// SnapshotChunkBytes each.
type EtcdSnapshotChunk struct {
	Snapshot *EtcdSnapshot `json:"snapshot,omitempty"`
	Data     []byte        `json:"data,omitempty"`
}

// SnapshotsServer is implemented by the hub.
type SnapshotsServer interface {
	Download(*EtcdSnapshotRequest, SnapshotSender) error
}

// SnapshotSender is the server side of Download.
type SnapshotSender interface {
	Context() context.Context
	Send(*EtcdSnapshotChunk) error
}

var downloadDesc = grpc.StreamDesc{StreamName: "Download", ServerStreams: true}

type snapshotSender struct{ grpc.ServerStream }

func (s snapshotSender) Send(c *EtcdSnapshotChunk) error { return s.SendMsg(c) }

// RegisterSnapshots serves impl on s.
func RegisterSnapshots(s *grpc.Server, impl SnapshotsServer) {
	d := downloadDesc
	d.Handler = func(srv any, stream grpc.ServerStream) error {
		req := new(EtcdSnapshotRequest)
		if err := stream.RecvMsg(req); err != nil {
			return err
		}
		return srv.(SnapshotsServer).Download(req, snapshotSender{stream})
	}
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: SnapshotsService,
		HandlerType: (*SnapshotsServer)(nil),
		Streams:     []grpc.StreamDesc{d},
	}, impl)
}

// ErrSnapshotMismatch is a download whose bytes are not what the hub said
// they would be: a different size or SHA-256 (cut short, or corrupted on
// the way).
var ErrSnapshotMismatch = errors.New("etcd snapshot download does not match the hub's description")

// DownloadEtcdSnapshot streams the named snapshot into w, telling got the
// description once it arrives (before any byte is written; an error from
// it ends the download) and sent the bytes written so far. It returns the
// description once every byte was written and their count and SHA-256
// equal it (ErrSnapshotMismatch otherwise).
func (c *AdminClient) DownloadEtcdSnapshot(ctx context.Context, name string, w io.Writer,
	got func(EtcdSnapshot) error, sent func(n int64)) (*EtcdSnapshot, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.cc.NewStream(ctx, &downloadDesc, "/"+SnapshotsService+"/Download", grpc.ForceCodec(Codec))
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(&EtcdSnapshotRequest{Name: name}); err != nil {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	first := new(EtcdSnapshotChunk)
	if err := st.RecvMsg(first); err != nil {
		return nil, err
	}
	desc := first.Snapshot
	if desc == nil || len(first.Data) > 0 {
		return nil, fmt.Errorf("%w: the first message carries no description", ErrSnapshotMismatch)
	}
	if b, err := hex.DecodeString(desc.SHA256); err != nil || len(b) != sha256.Size || desc.Bytes < 0 {
		return nil, fmt.Errorf("%w: a description without a size or a SHA-256", ErrSnapshotMismatch)
	}
	if got != nil {
		if err := got(*desc); err != nil {
			return nil, err
		}
	}
	h := sha256.New()
	var n int64
	for {
		c := new(EtcdSnapshotChunk)
		err := st.RecvMsg(c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if c.Snapshot != nil || int64(len(c.Data)) > SnapshotChunkBytes || n+int64(len(c.Data)) > desc.Bytes {
			return nil, fmt.Errorf("%w: %s: more than the %d bytes described, or a chunk out of place", ErrSnapshotMismatch, desc.Name, desc.Bytes)
		}
		if _, err := w.Write(c.Data); err != nil {
			return nil, err
		}
		h.Write(c.Data)
		n += int64(len(c.Data))
		if sent != nil {
			sent(n)
		}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != desc.Bytes || sum != desc.SHA256 {
		return nil, fmt.Errorf("%w: %s: got %d bytes with sha256 %s, described as %d bytes with sha256 %s",
			ErrSnapshotMismatch, desc.Name, n, sum, desc.Bytes, desc.SHA256)
	}
	return desc, nil
}
