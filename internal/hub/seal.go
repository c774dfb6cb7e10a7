package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// Sealed is the audit entry that holds a cluster's seal and the digest of
// the record it checked.
type Sealed struct {
	Entry        AuditEntry
	RecordSHA256 string
}

// Seal appends a cluster's acceptance record to the audit chain as
// cluster.seal: the record must be signed with the artifact key this hub
// was given, be of this hub's cluster (when it knows its spec), name an
// etcd snapshot this hub holds when the cluster runs etcd (checkSealEtcd)
// and anchor on an entry of this hub's own chain. The record itself is not kept: its
// sha256 is, in the entry, with the build, the checks and the signer.
// Admin; bounded (manifest.MaxAcceptanceBytes).
func (h *Hub) Seal(ctx context.Context, peer pki.Peer, record, sig []byte) (Sealed, error) {
	const target = "cluster"
	if err := h.begin(ctx, peer, pki.ActionSeal, target); err != nil {
		return Sealed{}, err
	}
	sum := sha256.Sum256(record)
	digest := hex.EncodeToString(sum[:])
	a, err := h.checkSeal(record, sig, digest)
	if err != nil {
		return Sealed{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionSeal), target, err))
	}
	etcd, err := h.checkSealEtcd(a)
	if err != nil {
		return Sealed{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionSeal), a.Cluster, err))
	}
	passed := 0
	for _, c := range a.Checks {
		if c.Outcome == "passed" {
			passed++
		}
	}
	detail := fmt.Sprintf("acceptance record sha256:%s of build %s (manifest sha256:%s): %d of %d checks passed",
		digest, a.BuildID, a.ManifestSHA256, passed, len(a.Checks))
	if len(a.Allowed) > 0 {
		detail += fmt.Sprintf(", accepted without %v", a.Allowed)
	}
	if etcd != "" {
		detail += "; " + etcd
	}
	detail += fmt.Sprintf("; anchored on audit entry %d; signed by %s", a.AuditHead.Seq, sign.KeyID(h.opt.ArtifactKey))
	e, err := h.opt.Store.Seal(AuditEntry{Time: h.now(), Actor: peer.Actor(), Action: string(pki.ActionSeal), Target: a.Cluster,
		Outcome: OutcomeOK, Detail: detail}, a.AuditHead.Seq, a.AuditHead.Hash)
	if err != nil {
		return Sealed{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionSeal), a.Cluster, err))
	}
	return Sealed{Entry: e, RecordSHA256: digest}, nil
}

// checkSeal checks a record's size, signature and cluster before anything
// of it is trusted.
func (h *Hub) checkSeal(record, sig []byte, digest string) (*manifest.Acceptance, error) {
	switch {
	case len(record) > manifest.MaxAcceptanceBytes:
		return nil, failf(ErrInvalid, "acceptance record is %d bytes, more than %d", len(record), manifest.MaxAcceptanceBytes)
	case len(sig) > 4<<10:
		return nil, failf(ErrInvalid, "acceptance record signature is %d bytes, more than %d", len(sig), 4<<10)
	case h.opt.ArtifactKey == nil:
		return nil, failf(ErrState, "this hub has no artifact key to check an acceptance record with")
	}
	if err := sign.VerifyBlob(h.opt.ArtifactKey, record, sig); err != nil {
		return nil, failf(ErrInvalid, "acceptance record sha256:%s: signature: %v", digest, err)
	}
	a, err := manifest.ParseAcceptance(record)
	if err != nil {
		return nil, failf(ErrInvalid, "%v", err)
	}
	if h.opt.Spec != nil && a.Cluster != h.opt.Spec.Metadata.Name {
		return nil, failf(ErrInvalid, "acceptance record of cluster %q; this hub is cluster %s's", clip(a.Cluster), h.opt.Spec.Metadata.Name)
	}
	return a, nil
}

// Seal appends e after checking, in the same transaction, that the chain
// holds entry seq with hash (the record's anchor): a record made against
// another hub, or a chain cut since, is refused. It returns e as appended.
func (s *Store) Seal(e AuditEntry, seq uint64, hash string) (AuditEntry, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var out AuditEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if seq == 0 {
			if k, _ := b.Cursor().First(); k != nil || hash != genesis {
				return failf(ErrInvalid, "acceptance record anchors on an empty audit chain; this hub's is not")
			}
		} else {
			var at AuditEntry
			raw := b.Get(seqKey(seq))
			if raw == nil {
				return failf(ErrInvalid, "acceptance record anchors on audit entry %d, which this hub does not have", seq)
			}
			if err := json.Unmarshal(raw, &at); err != nil {
				return fmt.Errorf("%w: audit/%d: %w", ErrCorrupt, seq, err)
			}
			if at.Hash != hash {
				return failf(ErrInvalid, "acceptance record anchors on audit entry %d with hash %s; this hub's is %s", seq, clip(hash), at.Hash)
			}
		}
		if err := appendAudit(tx, e); err != nil {
			return err
		}
		_, v := b.Cursor().Last()
		return json.Unmarshal(v, &out)
	})
	return out, closedErr(err)
}
