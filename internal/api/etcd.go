package api

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
)

// MaxEtcdMembers bounds the members an etcd answer may list (etcd itself
// advises at most seven voting members).
const MaxEtcdMembers = 64

// EtcdMembersRequest asks an etcd node for its cluster's members.
type EtcdMembersRequest struct{}

// EtcdMember is one member as etcd lists it, checked by the node before
// it answers: IDs decimal, names DNS labels (empty for a member added
// but not started yet), URLs https://address:port.
type EtcdMember struct {
	ID         string   `json:"id"`
	Name       string   `json:"name,omitempty"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	Learner    bool     `json:"learner,omitempty"`
}

// EtcdMembers is the member list as the node's local member sees it.
type EtcdMembers struct {
	// Node is the node that answered; Self is its local member's ID.
	Node    string       `json:"node"`
	Self    string       `json:"self"`
	Members []EtcdMember `json:"members"`
}

// EtcdRemoveMemberRequest removes a member from the etcd cluster. Name
// must be the member's listed name too (empty for one never started), so
// an ID read from an older list cannot remove another member.
type EtcdRemoveMemberRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// EtcdMembers lists the node's etcd cluster; reader.
func (c *NodeClient) EtcdMembers(ctx context.Context) (*EtcdMembers, error) {
	return invoke[EtcdMembers](ctx, c.cc, nodeMethod("EtcdMembers"), &EtcdMembersRequest{})
}

// EtcdRemoveMember removes member id (named name) from the node's etcd
// cluster and answers the members left; admin only.
func (c *NodeClient) EtcdRemoveMember(ctx context.Context, id, name string) (*EtcdMembers, error) {
	return invoke[EtcdMembers](ctx, c.cc, nodeMethod("EtcdRemoveMember"), &EtcdRemoveMemberRequest{ID: id, Name: name})
}

// EtcdRestoreBegin opens an EtcdRestore stream: which snapshot follows,
// its size and SHA-256 (the hub's, checked by the node against the bytes
// before anything is stopped), and the new cluster's token.
type EtcdRestoreBegin struct {
	// Snapshot is the hub's name of the snapshot (etcd-<time>-<member>.db).
	Snapshot string `json:"snapshot"`
	Bytes    int64  `json:"bytes"`
	SHA256   string `json:"sha256"`
	// Token is the restored cluster's token: the same for every member
	// restored from one snapshot (they must compute one cluster ID), and
	// new for each restore (so no member of the cluster before it can
	// join the one after).
	Token string `json:"token"`
}

// EtcdRestoreChunk is one message of an EtcdRestore stream: the first
// carries Begin, the rest the snapshot's bytes in order, at most
// SnapshotChunkBytes of Data each.
type EtcdRestoreChunk struct {
	Begin *EtcdRestoreBegin `json:"begin,omitempty"`
	Data  []byte            `json:"data,omitempty"`
}

// EtcdRestoreResult says what the node did: its member's data directory
// now holds the snapshot, the one before is kept beside it as Previous,
// and etcd's start on it is queued (it serves once a quorum of members
// is restored with the same token).
type EtcdRestoreResult struct {
	Node     string   `json:"node"`
	Snapshot string   `json:"snapshot"`
	SHA256   string   `json:"sha256"`
	Bytes    int64    `json:"bytes"`
	Token    string   `json:"token"`
	DataDir  string   `json:"dataDir"`
	Previous string   `json:"previous,omitempty"`
	Steps    []string `json:"steps,omitempty"`
}

// EtcdRestoreStream is the server side of EtcdRestore.
type EtcdRestoreStream interface {
	Context() context.Context
	Recv() (*EtcdRestoreChunk, error)
}

type etcdRestoreStream struct{ grpc.ServerStream }

func (s etcdRestoreStream) Recv() (*EtcdRestoreChunk, error) {
	c := new(EtcdRestoreChunk)
	if err := s.RecvMsg(c); err != nil {
		return nil, err
	}
	return c, nil
}

var etcdRestoreDesc = grpc.StreamDesc{StreamName: "EtcdRestore", ClientStreams: true}

// EtcdRestore streams a snapshot (begin, then r's bytes) to the node,
// which replaces its member's data directory with it; admin only.
func (c *NodeClient) EtcdRestore(ctx context.Context, begin EtcdRestoreBegin, r io.Reader) (*EtcdRestoreResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.cc.NewStream(ctx, &etcdRestoreDesc, nodeMethod("EtcdRestore"), grpc.ForceCodec(Codec))
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(&EtcdRestoreChunk{Begin: &begin}); err != nil {
		return nil, recvErr(st, err)
	}
	buf := make([]byte, SnapshotChunkBytes)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if err := st.SendMsg(&EtcdRestoreChunk{Data: buf[:n]}); err != nil {
				return nil, recvErr(st, err)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if err := st.CloseSend(); err != nil {
		return nil, recvErr(st, err)
	}
	res := new(EtcdRestoreResult)
	if err := st.RecvMsg(res); err != nil {
		return nil, err
	}
	return res, nil
}
