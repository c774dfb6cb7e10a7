package hub

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Audit actions of the enrollment protocol.
const (
	ActionEnrollBegin    = "enroll.begin"
	ActionEnrollActivate = "enroll.activate"
	ActionEnroll         = "enroll"
	ActionRenewBegin     = "renew.begin"
	ActionRenew          = "renew"
)

func nodeActor(name string) string { return "node:" + name }

func getSession(tx *bolt.Tx, id string) (Session, error) {
	var sess Session
	ok, err := get(tx, bucketSessions, id, &sess)
	if err != nil {
		return Session{}, err
	}
	if !ok {
		return Session{}, refuse("?", CheckSession, ErrNoSession, "no enrollment session %q", id)
	}
	return sess, nil
}

func finalAction(k SessionKind) string {
	if k == KindRenew {
		return ActionRenew
	}
	return ActionEnroll
}

// BeginSession admits a new enrollment session: the identity rules and the
// EK policy pass, and the session (claims, AK, hashed activation secret) is
// stored with its audit entry. A refusal stores nothing, not even an audit
// entry: the caller has proved nothing yet, and the Hub audits such
// refusals in summary.
func (s *Store) BeginSession(sess Session, facts EKFacts, now time.Time) error {
	e := AuditEntry{Time: now, Actor: nodeActor(sess.Name), Action: ActionEnrollBegin, Target: sess.Name}
	return s.applyQuiet(e, func(tx *bolt.Tx, e *AuditEntry) error {
		if sess.Kind != KindEnroll || sess.ID == "" || len(sess.SecretHash) != sha256.Size {
			return fmt.Errorf("begin session %q: want an enroll session with an id and a secret hash", sess.ID)
		}
		if _, err := getSession(tx, sess.ID); err == nil {
			return fmt.Errorf("begin session: id %q already used", sess.ID)
		}
		n, r, err := loadIdentity(tx, sess.Name, sess.EKHash)
		if err != nil {
			return err
		}
		if err := identityRule(KindEnroll, sess.Name, sess.EKHash, n, r); err != nil {
			return err
		}
		if sess.Admission, err = admission(tx, sess.Name, sess.EKHash, n, r, facts, now); err != nil {
			return err
		}
		e.Detail = fmt.Sprintf("session %s: role %s, EK %s admitted (%s), AK %s", sess.ID, sess.Role, sess.EKHash, sess.Admission, sess.AKHash)
		return put(tx, bucketSessions, sess.ID, sess)
	})
}

// BeginRenewal stores a renewal session for an enrolled node: bound to the
// AK the node proved at enrollment, so it starts activated, with its nonce.
func (s *Store) BeginRenewal(sess Session, now time.Time) error {
	e := AuditEntry{Time: now, Actor: nodeActor(sess.Name), Action: ActionRenewBegin, Target: sess.Name}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		if sess.Kind != KindRenew || sess.ID == "" || len(sess.Nonce) == 0 {
			return fmt.Errorf("begin renewal %q: want a renew session with an id and a nonce", sess.ID)
		}
		var n Node
		ok, err := get(tx, bucketNodes, sess.Name, &n)
		if err != nil {
			return err
		}
		np := &n
		if !ok {
			np = nil
		}
		if err := identityRule(KindRenew, sess.Name, n.EKHash, np, nil); err != nil {
			return err
		}
		sess.Role, sess.EKHash, sess.AKHash, sess.AKPublic = n.Role, n.EKHash, n.AKHash, n.AKPublic
		sess.Admission, sess.Activated = "enrolled", true
		e.Detail = fmt.Sprintf("session %s: nonce valid until %s", sess.ID, stamp(sess.NonceExpires))
		return put(tx, bucketSessions, sess.ID, sess)
	})
}

// Activate checks the node's credential activation answer against the
// session's hashed secret and, if it matches, issues the session's nonce.
// A wrong answer (the AK is not in the EK's TPM) ends the session.
func (s *Store) Activate(id string, secret, nonce []byte, nonceExpires, now time.Time) (Session, error) {
	var out Session
	e := AuditEntry{Time: now, Actor: nodeActor("?"), Action: ActionEnrollActivate, Target: "?"}
	err := s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		sess, err := getSession(tx, id)
		if err != nil {
			return err
		}
		e.Actor, e.Target = nodeActor(sess.Name), sess.Name
		if err := sessionStep(sess, KindEnroll, now); err != nil {
			return err
		}
		if sess.Activated {
			return refuse(sess.Name, CheckSession, ErrSessionState, "session %s is already activated", id)
		}
		got := sha256.Sum256(secret)
		if subtle.ConstantTimeCompare(got[:], sess.SecretHash) != 1 {
			sess.Done, sess.Outcome = true, OutcomeRefused+":"+CheckAKBinding
			if err := put(tx, bucketSessions, id, sess); err != nil {
				return err
			}
			return refuse(sess.Name, CheckAKBinding, ErrActivation,
				"credential activation answer is not the challenge secret: AK %s is not in the TPM holding EK %s", sess.AKHash, sess.EKHash)
		}
		sess.Activated, sess.Nonce, sess.NonceExpires = true, nonce, nonceExpires
		e.Detail = fmt.Sprintf("session %s: AK %s is in EK %s's TPM; nonce valid until %s", id, sess.AKHash, sess.EKHash, stamp(nonceExpires))
		out = sess
		return put(tx, bucketSessions, id, sess)
	})
	return out, err
}

// sessionStep checks a session may take its next step: of kind, not ended,
// not expired.
func sessionStep(sess Session, kind SessionKind, now time.Time) error {
	switch {
	case sess.Kind != kind:
		return refuse(sess.Name, CheckSession, ErrSessionState, "session %s is a %s session, not %s", sess.ID, sess.Kind, kind)
	case sess.Done:
		return refuse(sess.Name, CheckSession, ErrSessionState, "session %s has ended (%s)", sess.ID, sess.Outcome)
	case sess.Expired(now):
		return refuse(sess.Name, CheckSession, ErrSessionExpire, "session %s expired at %s", sess.ID, stamp(sess.Expires))
	}
	return nil
}

// TakeNonce spends the session's nonce: it must be the one issued, unused
// and unexpired, each failure its own error (ErrNonceMismatch,
// ErrNonceReused, ErrNonceExpired, as a *Refusal). It marks the nonce used
// in the same transaction, so two requests racing with one nonce cannot both
// pass. A failure is audited and changes nothing.
func (s *Store) TakeNonce(id string, nonce []byte, now time.Time) (Session, error) {
	var out Session
	var refusal error
	err := s.db.Update(func(tx *bolt.Tx) error {
		sess, err := getSession(tx, id)
		if err == nil {
			err = s.checkNonce(sess, nonce, now)
		}
		if err != nil {
			if _, ok := outcomeOf(err); !ok {
				return err
			}
			refusal = err
			name := sess.Name
			if name == "" {
				name = "?"
			}
			return appendAudit(tx, AuditEntry{Time: now, Actor: nodeActor(name), Action: finalAction(sess.Kind),
				Target: name, Outcome: OutcomeRefused, Detail: err.Error()})
		}
		sess.NonceUsed = true
		out = sess
		return put(tx, bucketSessions, id, sess)
	})
	if err != nil {
		return Session{}, closedErr(err)
	}
	return out, refusal
}

func (s *Store) checkNonce(sess Session, nonce []byte, now time.Time) error {
	switch {
	case !sess.Activated:
		return refuse(sess.Name, CheckSession, ErrSessionState, "session %s has no nonce yet: credential activation comes first", sess.ID)
	case len(nonce) != len(sess.Nonce) || subtle.ConstantTimeCompare(nonce, sess.Nonce) != 1:
		return refuse(sess.Name, CheckNonce, ErrNonceMismatch, "the nonce sent (%d bytes) is not the one issued to session %s", len(nonce), sess.ID)
	case sess.NonceUsed:
		return refuse(sess.Name, CheckNonce, ErrNonceReused, "nonce of session %s was already used", sess.ID)
	case sess.Done:
		return refuse(sess.Name, CheckSession, ErrSessionState, "session %s has ended (%s)", sess.ID, sess.Outcome)
	case !now.Before(sess.NonceExpires):
		return refuse(sess.Name, CheckNonce, ErrNonceExpired, "nonce of session %s expired at %s (now %s)", sess.ID, stamp(sess.NonceExpires), stamp(now))
	case sess.Expired(now):
		return refuse(sess.Name, CheckSession, ErrSessionExpire, "session %s expired at %s", sess.ID, stamp(sess.Expires))
	}
	return nil
}

// usedSession loads a session whose nonce was spent and which has not ended:
// the state Quarantine, EndSession and CompleteEnrollment start from.
func usedSession(tx *bolt.Tx, id string) (Session, error) {
	sess, err := getSession(tx, id)
	if err != nil {
		return Session{}, err
	}
	if sess.Done || !sess.Activated || !sess.NonceUsed {
		return Session{}, refuse(sess.Name, CheckSession, ErrSessionState, "session %s is not awaiting a result (done %v, nonce used %v)", id, sess.Done, sess.NonceUsed)
	}
	return sess, nil
}

// EndSession ends a session whose nonce was spent without a certificate or a
// quarantine: a refusal that does not blame the node's measurements (a bad
// CSR, a policy lookup failure) or the hub's own error. It records cause as
// the outcome and returns it.
func (s *Store) EndSession(id string, cause error, now time.Time) error {
	e := AuditEntry{Time: now, Actor: nodeActor("?"), Action: ActionEnroll, Target: "?"}
	err := s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		sess, err := usedSession(tx, id)
		if err != nil {
			return err
		}
		e.Actor, e.Target, e.Action = nodeActor(sess.Name), sess.Name, finalAction(sess.Kind)
		out, ok := outcomeOf(cause)
		if !ok {
			out = OutcomeFailed
		}
		e.Outcome, e.Detail = out, cause.Error()
		sess.Done, sess.Outcome = true, out
		return put(tx, bucketSessions, id, sess)
	})
	if err != nil {
		return err
	}
	return cause
}

// Quarantine records that the node of a session failed a check after
// proving it holds its TPM: the node becomes quarantined with reason (and
// the build it claimed), its live certificates are revoked, its EK stays
// bound to its name, and the session ends. It returns the *Refusal. If the
// identity rules now refuse the session (the name was revoked or taken
// meanwhile), that refusal is recorded instead and the node left alone.
func (s *Store) Quarantine(id string, reason Reason, buildID string, now time.Time) error {
	e := AuditEntry{Time: now, Actor: nodeActor("?"), Action: ActionEnroll, Target: "?"}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		sess, n, r, rule, err := endingSession(tx, id, e)
		if err != nil {
			return err
		}
		sess.Done, sess.Outcome = true, OutcomeQuarantined+":"+reason.Check
		if rule != nil {
			sess.Outcome = OutcomeRefused + ":" + rule.(*Refusal).Reason.Check
		}
		if err := put(tx, bucketSessions, id, sess); err != nil {
			return err
		}
		if rule != nil {
			return rule
		}
		if n == nil {
			n = &Node{Name: sess.Name}
		}
		reason.At = now
		revoked, err := s.revokeLive(tx, n, "quarantined: "+reason.Check, now)
		if err != nil {
			return err
		}
		n.State, n.Role, n.Reason, n.UpdatedAt = StateQuarantined, sess.Role, &reason, now
		n.EKHash, n.AKHash, n.AKPublic, n.BuildID = sess.EKHash, sess.AKHash, sess.AKPublic, buildID
		if err := put(tx, bucketNodes, n.Name, n); err != nil {
			return err
		}
		if err := bindEK(tx, r, sess.EKHash, n.Name, e.Actor, now); err != nil {
			return err
		}
		ref := &Refusal{Node: n.Name, Reason: reason, Quarantined: true, class: ErrEvidence}
		if len(revoked) > 0 {
			ref.Reason.Detail += fmt.Sprintf(" (certificates revoked: %v)", revoked)
		}
		return ref
	})
}

// endingSession opens the end of an enrollment or renewal session in tx:
// the used session, the audit entry named after its node, the node and EK
// records, and what the identity rules say now (rule nil: allowed).
func endingSession(tx *bolt.Tx, id string, e *AuditEntry) (sess Session, n *Node, r *EKRecord, rule, err error) {
	if sess, err = usedSession(tx, id); err != nil {
		return sess, nil, nil, nil, err
	}
	e.Actor, e.Target, e.Action = nodeActor(sess.Name), sess.Name, finalAction(sess.Kind)
	if n, r, err = loadIdentity(tx, sess.Name, sess.EKHash); err != nil {
		return sess, nil, nil, nil, err
	}
	return sess, n, r, identityRule(sess.Kind, sess.Name, sess.EKHash, n, r), nil
}

// bindEK records that ek is name's identity.
func bindEK(tx *bolt.Tx, r *EKRecord, ek, name, by string, now time.Time) error {
	rec := EKRecord{Hash: ek, At: now, By: by}
	if r != nil {
		if r.Name == name {
			return nil
		}
		rec = *r
	}
	rec.Name = name
	return put(tx, bucketEKs, ek, rec)
}

// Enrollment is what CompleteEnrollment records: the build the node proved
// it runs and the certificate issued to it.
type Enrollment struct {
	BuildID string
	Cert    Cert
}

// CompleteEnrollment records a verified node as enrolled with its new
// certificate, in one transaction with ending its session and the audit
// entry. The identity rules are checked again: if they refuse now (the name
// was quarantined, revoked or taken while the quote was being verified),
// nothing is enrolled and the certificate must be discarded.
func (s *Store) CompleteEnrollment(id string, res Enrollment, now time.Time) (Node, error) {
	var out Node
	e := AuditEntry{Time: now, Actor: nodeActor("?"), Action: ActionEnroll, Target: "?"}
	err := s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		sess, n, r, rule, err := endingSession(tx, id, e)
		if err != nil {
			return err
		}
		if rule == nil && sess.Expired(now) {
			rule = refuse(sess.Name, CheckSession, ErrSessionExpire, "session %s expired at %s before the result was recorded", id, stamp(sess.Expires))
		}
		if rule != nil {
			sess.Done, sess.Outcome = true, OutcomeRefused+":"+rule.(*Refusal).Reason.Check
			if err := put(tx, bucketSessions, id, sess); err != nil {
				return err
			}
			return rule
		}
		fresh := n == nil || n.State == StateReplaced || n.State == StatePending
		if n == nil {
			n = &Node{Name: sess.Name}
		}
		if fresh {
			n.EnrolledAt = now
			n.Certs = nil
		}
		n.State, n.Role, n.Reason, n.UpdatedAt = StateEnrolled, sess.Role, nil, now
		n.EKHash, n.AKHash, n.AKPublic, n.BuildID = sess.EKHash, sess.AKHash, bytes.Clone(sess.AKPublic), res.BuildID
		n.CertSerial, n.CertNotAfter = res.Cert.Serial, res.Cert.NotAfter
		n.Certs = append(liveCerts(n.Certs, now), res.Cert)
		n.Proven = provenAdd(n.Proven, res.BuildID)
		if n.Target == res.BuildID {
			n.Target = ""
		}
		if err := put(tx, bucketNodes, n.Name, n); err != nil {
			return err
		}
		if err := bindEK(tx, r, sess.EKHash, n.Name, e.Actor, now); err != nil {
			return err
		}
		sess.Done, sess.Outcome = true, string(n.State)
		if sess.Kind == KindRenew {
			sess.Outcome = "renewed"
		}
		if err := put(tx, bucketSessions, id, sess); err != nil {
			return err
		}
		e.Detail = fmt.Sprintf("build %s, certificate %s until %s, EK %s (%s), AK %s, session %s",
			res.BuildID, res.Cert.Serial, stamp(res.Cert.NotAfter), sess.EKHash, sess.Admission, sess.AKHash, id)
		out = *n
		return nil
	})
	return out, err
}

// PruneSessions deletes sessions that expired before now, ended or not, and
// returns how many. Sessions are protocol state, not records: what they did
// is in the audit log.
func (s *Store) PruneSessions(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		var dead [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var sess Session
			if err := json.Unmarshal(v, &sess); err != nil {
				return fmt.Errorf("%w: sessions/%s: %w", ErrCorrupt, k, err)
			}
			if sess.Expired(now) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	return n, closedErr(err)
}
