package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// snapHub sends the chunks it is given.
type snapHub struct{ chunks []*EtcdSnapshotChunk }

func (h *snapHub) Download(_ *EtcdSnapshotRequest, out SnapshotSender) error {
	for _, c := range h.chunks {
		if err := out.Send(c); err != nil {
			return err
		}
	}
	return nil
}

// TestDownloadEtcdSnapshotChecks: the client keeps what the hub described
// and nothing else: a download cut short, one longer than described, one
// with other bytes, a chunk over the bound, a description that comes late
// or carries no digest, are refused as ErrSnapshotMismatch; the bytes as
// described are accepted.
func TestDownloadEtcdSnapshotChecks(t *testing.T) {
	body := bytes.Repeat([]byte("etcd"), 1000)
	s := sha256.Sum256(body)
	desc := &EtcdSnapshot{Name: "etcd-20261206T160000Z-cp-1.db", Member: "cp-1", Bytes: int64(len(body)), SHA256: hex.EncodeToString(s[:])}
	h := &snapHub{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	RegisterSnapshots(srv, h)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cl := NewAdminClient(cc)
	other := bytes.Clone(body)
	other[7] ^= 1
	noSum := *desc
	noSum.SHA256 = "abc"
	for _, tt := range []struct {
		name   string
		chunks []*EtcdSnapshotChunk
		ok     bool
	}{
		{"as described, in two chunks", []*EtcdSnapshotChunk{{Snapshot: desc}, {Data: body[:100]}, {Data: body[100:]}}, true},
		{"cut short", []*EtcdSnapshotChunk{{Snapshot: desc}, {Data: body[:100]}}, false},
		{"longer", []*EtcdSnapshotChunk{{Snapshot: desc}, {Data: body}, {Data: []byte("x")}}, false},
		{"other bytes", []*EtcdSnapshotChunk{{Snapshot: desc}, {Data: other}}, false},
		{"no description", []*EtcdSnapshotChunk{{Data: body}}, false},
		{"a description without a digest", []*EtcdSnapshotChunk{{Snapshot: &noSum}, {Data: body}}, false},
		{"a second description", []*EtcdSnapshotChunk{{Snapshot: desc}, {Snapshot: desc, Data: body}}, false},
		{"a chunk over the bound", []*EtcdSnapshotChunk{{Snapshot: &EtcdSnapshot{Name: desc.Name, Bytes: SnapshotChunkBytes + 1, SHA256: desc.SHA256}},
			{Data: make([]byte, SnapshotChunkBytes+1)}}, false},
	} {
		h.chunks = tt.chunks
		var got bytes.Buffer
		d, err := cl.DownloadEtcdSnapshot(context.Background(), desc.Name, &got, nil, nil)
		if tt.ok {
			if err != nil || !bytes.Equal(got.Bytes(), body) || d.SHA256 != desc.SHA256 {
				t.Errorf("%s: %v, %d bytes", tt.name, err, got.Len())
			}
			continue
		}
		if !errors.Is(err, ErrSnapshotMismatch) {
			t.Errorf("%s: got %v, want ErrSnapshotMismatch", tt.name, err)
		}
	}
}
