package hub

import (
	"fmt"
	"regexp"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/pki"
)

// Audit actions of operator requests are the pki.Action names
// ("node.revoke", "ek.register"…).

var ekHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// CheckEKHash accepts what the EK policy names a TPM by: lower-case hex
// sha256 of the EK public key's PKIX DER (as in the ClusterSpec's
// trust.ekPolicy.registeredEKs).
func CheckEKHash(h string) error {
	if !ekHashRE.MatchString(h) {
		return failf(ErrInvalid, "EK hash %q is not a lower-case hex sha256 (64 characters)", h)
	}
	return nil
}

// RegisterEK records that the TPM with EK hash may enroll as node name,
// and as no other: the node becomes pending with that EK, any other EK
// claiming the name is a clone, and the EK under any other name is refused
// with both names. A name is required (an EK registered for any one name
// let a worker's TPM take the master's name). Re-registering a pending
// node with another EK replaces the earlier registration (the deploy step
// made a new VM). A node that is enrolled, quarantined, revoked or fenced
// with another EK must be replaced first. Registering what is already
// registered changes nothing.
func (s *Store) RegisterEK(actor, name, hash string, now time.Time) error {
	e := AuditEntry{Time: now, Actor: actor, Action: string(pki.ActionRegisterEK), Target: name}
	if name == "" {
		e.Target = "ek:" + hash
	}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		if err := CheckEKHash(hash); err != nil {
			return err
		}
		if name == "" {
			return failf(ErrInvalid, "EK %s: a registered EK is bound to one node name; name its node", hash)
		}
		if err := pki.CheckName("node name", name); err != nil {
			return failf(ErrInvalid, "%v", err)
		}
		n, r, err := loadIdentity(tx, name, hash)
		if err != nil {
			return err
		}
		switch {
		case r != nil && r.Retired:
			return failf(ErrState, "EK %s belonged to node %s, which was replaced; it may never enroll again", hash, r.Name)
		case r != nil && r.Name != "" && r.Name != name:
			return failf(ErrState, "EK %s is node %s's identity; replace %s first", hash, r.Name, r.Name)
		case n != nil && n.EKHash == hash:
			// Only the EK record changes (or nothing).
		case n != nil && n.State != StatePending && n.State != StateReplaced:
			return failf(ErrState, "node %s is %s with EK %s; replace it before registering another", name, n.State, n.EKHash)
		}
		rec := EKRecord{Hash: hash, Registered: true, At: now, By: actor}
		if r != nil && r.Registered && r.Name == name {
			e.Detail = fmt.Sprintf("EK %s already registered", hash)
			return nil
		}
		rec.Name = name
		if err := put(tx, bucketEKs, hash, rec); err != nil {
			return err
		}
		e.Detail = fmt.Sprintf("EK %s registered", hash)
		if n != nil && n.EKHash == hash {
			return nil
		}
		if n == nil {
			n = &Node{Name: name}
		}
		if n.State == StatePending && n.EKHash != "" {
			// The earlier registration is withdrawn, not retired: it never enrolled.
			if err := tx.Bucket(bucketEKs).Delete([]byte(n.EKHash)); err != nil {
				return err
			}
			e.Detail += fmt.Sprintf(", replacing EK %s", n.EKHash)
		}
		n.State, n.EKHash, n.AKHash, n.AKPublic, n.BuildID, n.Reason, n.UpdatedAt = StatePending, hash, "", nil, "", nil, now
		return put(tx, bucketNodes, name, n)
	})
}

// SetWindow opens the enrollment window until until (or closes it, with an
// until not after now).
func (s *Store) SetWindow(actor string, until, now time.Time) error {
	e := AuditEntry{Time: now, Actor: actor, Action: string(pki.ActionOpenWindow), Target: "window"}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		w := Window{Until: until, By: actor, At: now}
		if !until.After(now) {
			w.Until = now
			e.Detail = "closed"
		} else {
			e.Detail = fmt.Sprintf("open until %s (%s)", stamp(until), until.Sub(now))
		}
		return put(tx, bucketMeta, string(keyWindow), w)
	})
}

// Revoke marks the node revoked and puts every unexpired certificate it was
// issued in the revocation set, in one transaction. The name stays refused
// until Replace; the EK stays bound to it.
func (s *Store) Revoke(actor, name, detail string, now time.Time) error {
	return s.retire(actor, pki.ActionRevoke, name, StateRevoked, detail, now)
}

// Fence is Revoke with the node to be stopped as well (state fenced); the
// caller stops it.
func (s *Store) Fence(actor, name, detail string, now time.Time) error {
	return s.retire(actor, pki.ActionFence, name, StateFenced, detail, now)
}

func (s *Store) retire(actor string, action pki.Action, name string, to State, detail string, now time.Time) error {
	e := AuditEntry{Time: now, Actor: actor, Action: string(action), Target: name}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		n, err := getNode(tx, name)
		if err != nil {
			return err
		}
		switch {
		case n.State == StateReplaced:
			return failf(ErrState, "node %s was replaced; its identity is already retired", name)
		case n.State == to || (n.State == StateFenced && to == StateRevoked):
			e.Detail = fmt.Sprintf("already %s", n.State)
			return nil
		}
		serials, err := s.revokeLive(tx, &n, string(to)+" by "+actor, now)
		if err != nil {
			return err
		}
		n.State, n.UpdatedAt = to, now
		n.Reason = &Reason{Check: string(to), Detail: detail, At: now, By: actor}
		e.Detail = fmt.Sprintf("%s; certificates revoked: %v", detail, serials)
		return put(tx, bucketNodes, name, n)
	})
}

// Replace retires the node's identity: its live certificates are revoked,
// its EK may never enroll again, the identity moves to the node's History,
// and the name is free for a fresh TPM through the same enrollment gate.
func (s *Store) Replace(actor, name, detail string, now time.Time) error {
	e := AuditEntry{Time: now, Actor: actor, Action: string(pki.ActionReplace), Target: name}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		n, err := getNode(tx, name)
		if err != nil {
			return err
		}
		switch {
		case n.State == StateReplaced:
			e.Detail = "already replaced"
			return nil
		}
		serials, err := s.revokeLive(tx, &n, "replaced by "+actor, now)
		if err != nil {
			return err
		}
		if n.EKHash != "" {
			var r EKRecord
			if _, err := get(tx, bucketEKs, n.EKHash, &r); err != nil {
				return err
			}
			r.Hash, r.Name, r.Retired, r.At, r.By = n.EKHash, name, true, now, actor
			if err := put(tx, bucketEKs, n.EKHash, r); err != nil {
				return err
			}
		}
		n.History = append(n.History, Identity{
			EKHash: n.EKHash, AKHash: n.AKHash, BuildID: n.BuildID, CertSerial: n.CertSerial,
			State: n.State, Reason: n.Reason, EnrolledAt: n.EnrolledAt, RetiredAt: now, RetiredBy: actor,
		})
		e.Detail = fmt.Sprintf("%s; identity EK %s (%s) retired; certificates revoked: %v", detail, n.EKHash, n.State, serials)
		n = Node{Name: name, Role: n.Role, State: StateReplaced, UpdatedAt: now, History: n.History,
			Reason: &Reason{Check: string(StateReplaced), Detail: detail, At: now, By: actor}}
		return put(tx, bucketNodes, name, n)
	})
}

// RevokeClient adds an operator certificate to the revocation set, with
// its audit entry in the same transaction. Revoking one twice changes
// nothing (the entry says so).
func (s *Store) RevokeClient(actor string, rc RevokedCert, now time.Time) error {
	e := AuditEntry{Time: now, Actor: actor, Action: string(pki.ActionRevokeClient), Target: rc.Client, Detail: "serial " + rc.Serial}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		var old RevokedCert
		ok, err := get(tx, bucketRevoked, rc.Serial, &old)
		if err != nil {
			return err
		}
		if ok {
			e.Detail += ": already revoked"
			return nil
		}
		if err := put(tx, bucketRevoked, rc.Serial, rc); err != nil {
			return err
		}
		// Before commit, so a failure fails closed.
		if err := s.revoked.Add(rc.Serial); err != nil {
			return fmt.Errorf("%w: client %s: %w", ErrCorrupt, rc.Client, err)
		}
		return nil
	})
}
