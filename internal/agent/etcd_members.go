package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// The node API's etcd methods (EtcdMembers, EtcdRemoveMember) reach the
// cluster through the node's own member, on its loopback client URL with
// the member's etcd certificate: the operator never holds an etcd
// credential, and the node's API decides who may do what (a reader lists,
// an admin removes). etcd's answers are checked before anything of them
// is logged or returned.

// EtcdMembership lists and removes the members of the cluster's etcd
// through the node's own member (kubeRunner).
type EtcdMembership interface {
	EtcdMembers(ctx context.Context) (*api.EtcdMembers, error)
	EtcdRemoveMember(ctx context.Context, id, name string) (*api.EtcdMembers, error)
}

// etcdLocalURL is the local member's client URL (it listens on loopback
// as well as on the LAN: kubeplan.Args).
var etcdLocalURL = "https://127.0.0.1:" + strconv.Itoa(kubeplan.EtcdClientPort)

// maxEtcdURLs bounds the peer or client URLs of one member.
const maxEtcdURLs = 8

// etcdListed is a member as etcd's member list writes it (uint64 IDs as
// strings).
type etcdListed struct {
	ID         string   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// EtcdMembers lists the etcd cluster's members as the node's own member
// sees them.
func (k *kubeRunner) EtcdMembers(ctx context.Context) (*api.EtcdMembers, error) {
	cl, base, node, err := k.localEtcd()
	if err != nil {
		return nil, err
	}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := listEtcdMembers(ctx, cl, base)
	if err != nil {
		return nil, fmt.Errorf("etcd member list through %s: %w", node, err)
	}
	out.Node = node
	return out, nil
}

// EtcdRemoveMember removes member id, which etcd must list under name,
// and answers the members left. The node's own member is refused: the
// member serving the call would stop, and its node is in the spec.
// etcd itself refuses a removal that would cost the quorum (its strict
// reconfiguration check).
func (k *kubeRunner) EtcdRemoveMember(ctx context.Context, id, name string) (*api.EtcdMembers, error) {
	if !validEtcdID(id) {
		return nil, fmt.Errorf("%w: etcd member ID %q is not a member ID", ErrInvalid, clipString(id))
	}
	if name != "" && !validKubeName(name) {
		return nil, fmt.Errorf("%w: etcd member name %q is not a DNS label", ErrInvalid, clipString(name))
	}
	cl, base, node, err := k.localEtcd()
	if err != nil {
		return nil, err
	}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	before, err := listEtcdMembers(ctx, cl, base)
	if err != nil {
		return nil, fmt.Errorf("etcd member list through %s: %w", node, err)
	}
	i := slices.IndexFunc(before.Members, func(m api.EtcdMember) bool { return m.ID == id })
	switch {
	case i < 0:
		return nil, fmt.Errorf("%w: etcd lists no member %s", ErrNotFound, id)
	case before.Members[i].Name != name:
		return nil, fmt.Errorf("%w: etcd member %s is named %q, not %q", ErrRefused, id, before.Members[i].Name, name)
	case id == before.Self:
		return nil, fmt.Errorf("%w: etcd member %s (%s) is %s's own; remove it through another member", ErrRefused, id, name, node)
	}
	if err := etcdCall(ctx, cl, base, "/v3/cluster/member/remove", map[string]string{"ID": id}, nil); err != nil {
		return nil, fmt.Errorf("removing etcd member %s (%s): %w", id, memberLabel(name), err)
	}
	k.logf("kubernetes: removed etcd member %s (%s) through %s", id, memberLabel(name), node)
	after, err := listEtcdMembers(ctx, cl, base)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s removed; the list after: %w", id, err)
	}
	after.Node = node
	return after, nil
}

// localEtcd is the client and URL of the node's own member, and the
// node's name; ErrNotFound on a node whose plan runs no etcd.
func (k *kubeRunner) localEtcd() (*http.Client, string, string, error) {
	p, err := k.loadPlan()
	if err != nil {
		return nil, "", "", err
	}
	if p == nil || !slices.Contains(p.Components, kubeplan.Etcd) {
		return nil, "", "", fmt.Errorf("%w: this node runs no etcd member", ErrNotFound)
	}
	cl, err := k.etcdClient()
	if err != nil {
		return nil, "", "", err
	}
	base := k.etcdLocal
	if base == "" {
		base = etcdLocalURL
	}
	return cl, base, p.Node, nil
}

// listEtcdMembers asks the member at base for the member list and checks
// every field before it goes further.
func listEtcdMembers(ctx context.Context, cl *http.Client, base string) (*api.EtcdMembers, error) {
	var list struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Members []etcdListed `json:"members"`
	}
	if err := etcdCall(ctx, cl, base, "/v3/cluster/member/list", struct{}{}, &list); err != nil {
		return nil, err
	}
	if len(list.Members) == 0 || len(list.Members) > api.MaxEtcdMembers {
		return nil, fmt.Errorf("member list: %d members", len(list.Members))
	}
	out := &api.EtcdMembers{Self: list.Header.MemberID, Members: []api.EtcdMember{}}
	for _, m := range list.Members {
		got, err := checkListed(m)
		if err != nil {
			return nil, fmt.Errorf("member list: %w", err)
		}
		if slices.ContainsFunc(out.Members, func(o api.EtcdMember) bool { return o.ID == got.ID }) {
			return nil, fmt.Errorf("member list: member %s twice", got.ID)
		}
		out.Members = append(out.Members, got)
	}
	if !slices.ContainsFunc(out.Members, func(m api.EtcdMember) bool { return m.ID == out.Self }) {
		return nil, fmt.Errorf("member list: the answering member %q is not among the members", clipString(out.Self))
	}
	return out, nil
}

// checkListed: a decimal ID, a DNS label or no name (added, not started),
// one to eight https://address:port peer URLs and at most eight such
// client URLs (they are shown to operators and dialled by nobody here).
func checkListed(m etcdListed) (api.EtcdMember, error) {
	if !validEtcdID(m.ID) {
		return api.EtcdMember{}, fmt.Errorf("member ID %q", clipString(m.ID))
	}
	if m.Name != "" && !validKubeName(m.Name) {
		return api.EtcdMember{}, fmt.Errorf("member %s: name %q is not a DNS label", m.ID, clipString(m.Name))
	}
	if len(m.PeerURLs) == 0 || len(m.PeerURLs) > maxEtcdURLs || len(m.ClientURLs) > maxEtcdURLs {
		return api.EtcdMember{}, fmt.Errorf("member %s: %d peer and %d client URLs", m.ID, len(m.PeerURLs), len(m.ClientURLs))
	}
	for _, u := range append(slices.Clone(m.PeerURLs), m.ClientURLs...) {
		if !validEtcdURL(u) {
			return api.EtcdMember{}, fmt.Errorf("member %s: URL %q is not https://address:port", m.ID, clipString(u))
		}
	}
	return api.EtcdMember{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner}, nil
}

// validEtcdID: etcd's member IDs are non-zero uint64s, written in decimal.
func validEtcdID(s string) bool {
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n != 0 && strconv.FormatUint(n, 10) == s
}

func validEtcdURL(u string) bool {
	rest, ok := strings.CutPrefix(u, "https://")
	if !ok {
		return false
	}
	ap, err := netip.ParseAddrPort(rest)
	return err == nil && ap.Port() != 0 && ap.Addr().Zone() == ""
}

// memberLabel names a member for a message: its name, or that it has
// none yet.
func memberLabel(name string) string {
	if name == "" {
		return "not started"
	}
	return name
}
