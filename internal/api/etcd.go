package api

import "context"

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
