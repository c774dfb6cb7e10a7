package hub

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// RoleBuild is one role image of a signed build the hub was given.
type RoleBuild struct {
	BuildID string                `json:"buildID"`
	Role    string                `json:"role"`
	Image   manifest.RoleManifest `json:"image"`
}

// predictionOf decodes and checks a role image's PCR prediction (the
// hub's fake-verifier tests swap in a decoder for their event-less ones).
var predictionOf = build.PredictedPCRs

// provenKeep is how many attested builds a node's record remembers.
const provenKeep = 3

func provenAdd(p []string, id string) []string {
	p = slices.DeleteFunc(slices.Clone(p), func(s string) bool { return s == id })
	p = append(p, id)
	if len(p) > provenKeep {
		p = p[len(p)-provenKeep:]
	}
	return p
}

// AssignBuild records that node name may run the signed build (manifest
// and its signature): the hub checks the signature with the artifact key,
// keeps the node's role image, and accepts it when the node attests next.
// Admin (node.upgrade).
func (h *Hub) AssignBuild(ctx context.Context, peer pki.Peer, name string, raw, sig []byte) (Node, error) {
	if err := h.begin(ctx, peer, pki.ActionUpgrade, name); err != nil {
		return Node{}, err
	}
	m, err := verifyManifest(h.opt.ArtifactKey, raw, sig)
	if err != nil {
		err = failf(ErrInvalid, "%v", err)
		return Node{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionUpgrade), name, err))
	}
	return h.opt.Store.AssignBuild(peer.Actor(), name, m, h.now())
}

func verifyManifest(key ed25519.PublicKey, raw, sig []byte) (*manifest.Manifest, error) {
	if key == nil {
		return nil, errors.New("this hub has no artifact key to check builds with")
	}
	if err := sign.VerifyBlob(key, raw, sig); err != nil {
		return nil, fmt.Errorf("build manifest signature: %w", err)
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("build manifest: %w", err)
	}
	return m, nil
}

// AssignBuild stores the node's role image of m and makes it the node's
// target, in one transaction with its audit entry.
func (s *Store) AssignBuild(actor, name string, m *manifest.Manifest, now time.Time) (Node, error) {
	var out Node
	e := AuditEntry{Time: now, Actor: actor, Action: string(pki.ActionUpgrade), Target: name}
	err := s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		var n Node
		ok, err := get(tx, bucketNodes, name, &n)
		if err != nil {
			return err
		}
		if !ok {
			return failf(ErrNotFound, "no node %q", name)
		}
		if n.State != StateEnrolled {
			return failf(ErrState, "node %s is %s; only an enrolled node can be upgraded", name, n.State)
		}
		img, ok := m.Roles[n.Role]
		if !ok {
			return failf(ErrInvalid, "build %s has no image for role %s", m.BuildID, n.Role)
		}
		if rb, err := retiredIn(tx, img.RoleID, m.BuildID); err != nil {
			return err
		} else if rb != nil {
			return failf(ErrBuildRetired, "node %s may not be upgraded to build %s (role %s image %s): %s", name, m.BuildID, n.Role, img.RoleID, rb)
		}
		if err := put(tx, bucketBuilds, img.RoleID, RoleBuild{BuildID: m.BuildID, Role: n.Role, Image: img}); err != nil {
			return err
		}
		n.Target, n.UpdatedAt = img.RoleID, now
		if err := put(tx, bucketNodes, name, n); err != nil {
			return err
		}
		e.Detail = fmt.Sprintf("may run build %s (role %s image %s); runs %s", m.BuildID, n.Role, img.RoleID, n.BuildID)
		out = n
		return nil
	})
	return out, err
}

// roleBuild reads an assigned role image.
func (s *Store) roleBuild(id string) (RoleBuild, bool, error) {
	var rb RoleBuild
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		ok, err = get(tx, bucketBuilds, id, &rb)
		return err
	})
	return rb, ok, err
}

// expected is what node name must have booted: the build it claims, when
// that is the spec's build for its role, its assigned target or one it
// proved before; otherwise the build it should run (the target, if any),
// so the refusal names it.
func (h *Hub) expected(name, role, claimed string) (string, measure.Prediction, error) {
	def, pred, err := h.opt.Policy.Expected(name, role)
	if err != nil || claimed == def {
		return def, pred, err
	}
	n, err := h.opt.Store.Node(name)
	if errors.Is(err, ErrNotFound) {
		return def, pred, nil
	}
	if err != nil {
		return "", measure.Prediction{}, err
	}
	for _, id := range append([]string{n.Target}, n.Proven...) {
		if id == "" || id != claimed {
			continue
		}
		rb, found, err := h.opt.Store.roleBuild(id)
		if err != nil {
			return "", measure.Prediction{}, err
		}
		if !found || rb.Role != role {
			continue // the spec's build, proven before: def covers it
		}
		p, err := predictionOf(rb.Image)
		if err != nil {
			return "", measure.Prediction{}, err
		}
		return id, p, nil
	}
	if n.Target != "" {
		if rb, found, err := h.opt.Store.roleBuild(n.Target); err == nil && found && rb.Role == role {
			p, err := predictionOf(rb.Image)
			return n.Target, p, err
		}
	}
	return def, pred, nil
}
