package hub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
)

// JoinPlanes records an enrolled node's WireGuard public keys and returns
// the interfaces it should have (wg.Render over every enrolled node that
// has joined). Nodes call it periodically: registering the same keys again
// changes and audits nothing, so the call doubles as the node's way of
// learning who else is on its planes, and a revoked node drops out of the
// master's peers at the master's next call.
func (h *Hub) JoinPlanes(ctx context.Context, peer pki.Peer, keys map[spec.Plane]string) ([]wg.Interface, error) {
	if err := h.authorize(peer, pki.ActionJoinPlanes, peer.Name); err != nil {
		return nil, err
	}
	s := h.opt.Spec
	if s == nil {
		return nil, failf(ErrState, "this hub runs without the cluster spec, so it has no planes")
	}
	if err := wg.CheckPublicKeys(s, keys); err != nil {
		err = failf(ErrInvalid, "plane keys of node %s: %v", peer.Name, err)
		return nil, errors.Join(err, h.record(peer.Actor(), string(pki.ActionJoinPlanes), peer.Name, err))
	}
	if err := h.opt.Store.SetPlaneKeys(peer.Actor(), peer.Name, keys, h.now()); err != nil {
		return nil, err
	}
	h.met.joined()
	nodes, err := h.opt.Store.Nodes()
	if err != nil {
		return nil, err
	}
	var members []wg.Member
	for _, n := range nodes {
		if n.State == StateEnrolled && len(n.PlaneKeys) > 0 {
			members = append(members, wg.Member{Name: n.Name, Keys: n.PlaneKeys})
		}
	}
	ifcs, err := wg.Render(s, peer.Name, members)
	if err != nil {
		return nil, failf(ErrInvalid, "planes of node %s: %v", peer.Name, err)
	}
	return ifcs, nil
}

// SetPlaneKeys stores node name's plane keys. The node must be enrolled,
// and no other node may hold the same key on a plane. Keys equal to the
// stored ones change nothing and are not audited.
func (s *Store) SetPlaneKeys(actor, name string, keys map[spec.Plane]string, now time.Time) error {
	n, err := s.Node(name)
	if err == nil && n.State == StateEnrolled && maps.Equal(n.PlaneKeys, keys) {
		return nil
	}
	e := AuditEntry{Time: now, Actor: actor, Action: string(pki.ActionJoinPlanes), Target: name}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		n, err := getNode(tx, name)
		if err != nil {
			return err
		}
		if n.State != StateEnrolled {
			return failf(ErrState, "node %s is %s, not enrolled: it may not join the planes", name, n.State)
		}
		others, err := list[Node](tx, bucketNodes)
		if err != nil {
			return err
		}
		for _, o := range others {
			for p, k := range keys {
				if o.Name != name && o.PlaneKeys[p] == k {
					return failf(ErrInvalid, "plane %s: node %s already holds public key %s", p, o.Name, k)
				}
			}
		}
		verb := "registered"
		if len(n.PlaneKeys) > 0 {
			verb = "changed"
		}
		planes := slices.Sorted(maps.Keys(keys))
		var parts []string
		for _, p := range planes {
			parts = append(parts, fmt.Sprintf("%s %s", p, keys[p]))
		}
		e.Detail = verb + " plane keys: " + strings.Join(parts, ", ")
		n.PlaneKeys, n.UpdatedAt = keys, now
		return put(tx, bucketNodes, name, n)
	})
}
