package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
)

// CheckBuildRetired names the refusal of a node that attests a retired build.
const CheckBuildRetired = "build-retired"

// ErrBuildRetired: the build was retired by an admin; nodes may not enroll,
// renew or be upgraded onto it.
var ErrBuildRetired error = &sentinel{"build retired", OutcomeRefused, errdefs.ErrPermission}

// maxRetireReason bounds a retirement's reason (an admin's words, kept in
// the state and quoted in every refusal).
const maxRetireReason = 512

// RetiredBuild is a build an admin retired: with it, nodes get no
// certificate, no renewal and no upgrade.
type RetiredBuild struct {
	// ID is a build-id as nodes report it (a role image id) or a
	// manifest's build-id (every role image of that build).
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
}

func (r RetiredBuild) String() string {
	return fmt.Sprintf("build %s was retired by %s at %s: %s", r.ID, r.By, stamp(r.At), r.Reason)
}

// RetireBuild retires build id (a role image id or a manifest's build-id)
// with reason: from now on a node attesting it is refused at enrollment and
// renewal, AssignBuild refuses it, and nodes running it show it. There is
// no un-retiring: a build found bad stays bad. Admin.
func (h *Hub) RetireBuild(ctx context.Context, peer pki.Peer, id, reason string) (RetiredBuild, error) {
	if err := h.begin(ctx, peer, pki.ActionRetireBuild, id); err != nil {
		return RetiredBuild{}, err
	}
	var err error
	switch {
	case id == "" || !buildIDRE.MatchString(id):
		err = failf(ErrInvalid, "build-id %s: want up to 128 letters, digits and ._:+-", quote(id))
	case reason == "" || len(reason) > maxRetireReason:
		err = failf(ErrInvalid, "a reason of 1 to %d bytes is required, got %d", maxRetireReason, len(reason))
	}
	if err != nil {
		return RetiredBuild{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionRetireBuild), quote(id), err))
	}
	return h.opt.Store.RetireBuild(RetiredBuild{ID: id, Reason: reason, At: h.now(), By: peer.Actor()})
}

// RetireBuild records r, with its audit entry; retiring a build twice keeps
// the first retirement.
func (s *Store) RetireBuild(r RetiredBuild) (RetiredBuild, error) {
	out := r
	e := AuditEntry{Time: r.At, Actor: r.By, Action: string(pki.ActionRetireBuild), Target: r.ID}
	err := s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		var old RetiredBuild
		ok, err := get(tx, bucketRetired, r.ID, &old)
		if err != nil {
			return err
		}
		if ok {
			out = old
			e.Detail = "already retired: " + old.String()
			return nil
		}
		e.Detail = r.Reason
		return put(tx, bucketRetired, r.ID, r)
	})
	return out, err
}

// RetiredBuilds lists the retired builds by id.
func (s *Store) RetiredBuilds() (map[string]RetiredBuild, error) {
	out := map[string]RetiredBuild{}
	err := s.view(func(tx *bolt.Tx) error {
		all, err := list[RetiredBuild](tx, bucketRetired)
		for _, r := range all {
			out[r.ID] = r
		}
		return err
	})
	return out, err
}

// retiredIn finds the first of ids that is retired, in tx.
func retiredIn(tx *bolt.Tx, ids ...string) (*RetiredBuild, error) {
	for _, id := range ids {
		if id == "" {
			continue
		}
		var r RetiredBuild
		ok, err := get(tx, bucketRetired, id, &r)
		if err != nil || ok {
			return &r, err
		}
	}
	return nil, nil
}

// manifestIDer is a Policy that knows the manifest build-id of the builds
// it expects (ManifestPolicy), so retiring that build-id covers them.
type manifestIDer interface{ ManifestBuildID() string }

// Retirement says whether node n's build (as the node reports it, or the
// manifest it came from) is retired: nil if not.
func (h *Hub) Retirement(n Node) (*RetiredBuild, error) {
	return h.retiredFor(n.Name, n.Role, n.BuildID)
}

// retiredFor finds the retirement of role image id run by node name of
// role, by the image id or by its manifest's build-id.
func (h *Hub) retiredFor(name, role, id string) (*RetiredBuild, error) {
	if id == "" {
		return nil, nil
	}
	ids := []string{id}
	if m, ok := h.opt.Policy.(manifestIDer); ok {
		if def, _, err := h.opt.Policy.Expected(name, role); err == nil && def == id {
			ids = append(ids, m.ManifestBuildID())
		}
	}
	var out *RetiredBuild
	err := h.opt.Store.view(func(tx *bolt.Tx) error {
		var rb RoleBuild
		if ok, err := get(tx, bucketBuilds, id, &rb); err != nil {
			return err
		} else if ok {
			ids = append(ids, rb.BuildID)
		}
		var err error
		out, err = retiredIn(tx, ids...)
		return err
	})
	return out, err
}
