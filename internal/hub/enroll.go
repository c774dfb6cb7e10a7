package hub

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

// BeginRequest is a node's first enrollment message: who it claims to be
// and its TPM identity. Nothing in it is trusted yet.
type BeginRequest struct {
	Name, Role string
	Identity   TPMIdentity
}

// Begun is the hub's answer: the session and the credential activation
// challenge for the node's TPM.
type Begun struct {
	Session   string
	Challenge Challenge
	Expires   time.Time
}

// Nonce is a single-use nonce for a quote.
type Nonce struct {
	Session string
	Value   []byte
	Expires time.Time
}

// EnrollRequest is a node's quote over its nonce with what it asks to be
// certified: the build it booted and a CSR for a key it generated.
type EnrollRequest struct {
	Session  string
	Nonce    []byte
	Evidence Evidence
	BuildID  string
	CSR      []byte
}

// Enrolled is a node's new identity.
type Enrolled struct {
	Node    Node
	Cert    *x509.Certificate
	CertPEM []byte
	// CAPEM is the cluster CA the node must trust for the hub and its peers.
	CAPEM []byte
}

// BeginEnrollment checks the claims (name and role known to the policy, a
// well-formed EK and AK), applies the identity rules and the EK policy, and
// returns a credential activation challenge. Refusals here record nothing
// but an audit entry: the requester has not yet proved it holds the TPM, so
// it cannot quarantine the name it claims.
func (h *Hub) BeginEnrollment(ctx context.Context, req BeginRequest) (*Begun, error) {
	b, err := h.beginEnrollment(ctx, req)
	h.met.refusal(err)
	return b, err
}

func (h *Hub) beginEnrollment(ctx context.Context, req BeginRequest) (*Begun, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.admitAnon(ctx, ActionEnrollBegin); err != nil {
		return nil, err
	}
	now := h.now()
	name := req.Name
	if err := pki.CheckName("node name", req.Name); err != nil {
		return nil, h.refusedAnon(ctx, ActionEnrollBegin, refuse("?", CheckRequest, ErrInvalid, "claimed %v", err))
	}
	if err := pki.CheckName("node role", req.Role); err != nil {
		return nil, h.refusedAnon(ctx, ActionEnrollBegin, refuse(name, CheckRequest, ErrInvalid, "claimed %v", err))
	}
	if err := checkBegin(req); err != nil {
		return nil, h.refusedAnon(ctx, ActionEnrollBegin, refuse(name, CheckRequest, ErrInvalid, "%v", err))
	}
	ek, err := EKHash(req.Identity.EKPublic)
	if err != nil {
		return nil, h.refusedAnon(ctx, ActionEnrollBegin, refuse(name, CheckRequest, ErrInvalid, "%v", err))
	}
	if len(req.Identity.AK.Public) == 0 {
		return nil, h.refusedAnon(ctx, ActionEnrollBegin, refuse(name, CheckRequest, ErrInvalid, "no AK public key"))
	}
	if _, _, err := h.opt.Policy.Expected(name, req.Role); err != nil {
		return nil, h.refusedAnon(ctx, ActionEnrollBegin, refuse(name, CheckPolicy, ErrPolicy, "node %s as role %s: %v", name, req.Role, err))
	}
	facts := EKFacts{WindowAllowed: h.opt.AllowWindow, CertDetail: "the TPM sent no EK certificate"}
	if len(req.Identity.EKCertificate) > 0 {
		err := h.opt.Verifier.CheckEKCertificate(req.Identity)
		facts.Vouched = err == nil
		if err != nil {
			facts.CertDetail = err.Error()
		}
	}
	ch, secret, err := h.opt.Verifier.NewChallenge(req.Identity)
	if err != nil {
		var f *CheckFailure
		if errors.As(err, &f) {
			return nil, h.refusedAnon(ctx, ActionEnrollBegin, &Refusal{Node: name, Reason: reasonOf(f), class: ErrActivation})
		}
		err = fmt.Errorf("node %s: credential activation challenge: %w", name, err)
		return nil, errors.Join(err, h.record(nodeActor(name), ActionEnrollBegin, name, err))
	}
	id, err := randomBytes(16)
	if err != nil {
		return nil, err
	}
	secretHash := sha256.Sum256(secret)
	sess := Session{
		ID: hex.EncodeToString(id), Kind: KindEnroll, Name: name, Role: req.Role,
		EKHash: ek, AKHash: hashHex(req.Identity.AK.Public), AKPublic: req.Identity.AK.Public,
		SecretHash: secretHash[:], Created: now, Expires: now.Add(h.opt.SessionTTL),
	}
	if err := h.opt.Store.BeginSession(sess, facts, now); err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			return nil, h.refusedAnon(ctx, ActionEnrollBegin, r)
		}
		return nil, err
	}
	return &Begun{Session: sess.ID, Challenge: ch, Expires: sess.Expires}, nil
}

// CompleteActivation takes the secret the node's TPM released from the
// challenge. If it is right, the AK lives beside the EK and the hub issues
// the session's single-use nonce; if not, the session ends refused.
func (h *Hub) CompleteActivation(ctx context.Context, session string, secret []byte) (*Nonce, error) {
	n, err := h.completeActivation(ctx, session, secret)
	h.met.refusal(err)
	return n, err
}

func (h *Hub) completeActivation(ctx context.Context, session string, secret []byte) (*Nonce, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.admitAnon(ctx, ActionEnrollActivate); err != nil {
		return nil, err
	}
	now := h.now()
	if r := checkSessionID(session); r != nil {
		return nil, h.refusedAnon(ctx, ActionEnrollActivate, r)
	}
	if len(secret) > maxSecretBytes {
		return nil, h.refusedAnon(ctx, ActionEnrollActivate, refuse("?", CheckRequest, ErrInvalid, "activation answer of %d bytes, more than %d", len(secret), maxSecretBytes))
	}
	// Whatever an unknown, ended or expired session refuses changes
	// nothing: audited in summary, so replays cannot grow the log.
	cur, err := h.opt.Store.Session(session)
	if err == nil {
		err = sessionStep(cur, KindEnroll, now)
		if err == nil && cur.Activated {
			err = refuse(cur.Name, CheckSession, ErrSessionState, "session %s is already activated", session)
		}
	}
	if r := (*Refusal)(nil); errors.As(err, &r) {
		return nil, h.refusedAnon(ctx, ActionEnrollActivate, r)
	} else if err != nil {
		return nil, err
	}
	nonce, err := randomBytes(32)
	if err != nil {
		return nil, err
	}
	sess, err := h.opt.Store.Activate(session, secret, nonce, now.Add(h.opt.NonceTTL), now)
	if err != nil {
		return nil, err
	}
	return &Nonce{Session: session, Value: nonce, Expires: sess.NonceExpires}, nil
}

// Enroll verifies a node's quote and, only if every check passes, signs its
// CSR and records it enrolled. The order: the nonce (issued to this session,
// unused, unexpired, spent at once), the evidence against the prediction of
// the build the node's role must run, the build the node reports, the CSR.
// A failed evidence check or a wrong build quarantines the node (it proved
// its TPM, so the failure is its own); the other failures only refuse. Every
// outcome is a *Refusal or an error; a certificate is returned only after it
// is recorded.
func (h *Hub) Enroll(ctx context.Context, req EnrollRequest) (*Enrolled, error) {
	e, err := h.finish(ctx, KindEnroll, nil, req)
	h.met.attempt(KindEnroll, err)
	return e, err
}

// BeginRenewal starts a renewal for the node peer speaks for (its current,
// verified certificate): a session bound to the AK it enrolled with, and a
// nonce for a fresh quote.
func (h *Hub) BeginRenewal(ctx context.Context, peer pki.Peer) (*Nonce, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.authorize(peer, pki.ActionRenew, peer.Name); err != nil {
		return nil, err
	}
	now := h.now()
	id, err := randomBytes(16)
	if err != nil {
		return nil, err
	}
	nonce, err := randomBytes(32)
	if err != nil {
		return nil, err
	}
	sess := Session{ID: hex.EncodeToString(id), Kind: KindRenew, Name: peer.Name,
		Nonce: nonce, NonceExpires: now.Add(h.opt.NonceTTL), Created: now, Expires: now.Add(h.opt.SessionTTL)}
	if err := h.opt.Store.BeginRenewal(sess, now); err != nil {
		return nil, err
	}
	return &Nonce{Session: sess.ID, Value: nonce, Expires: sess.NonceExpires}, nil
}

// Renew is Enroll for an enrolled node renewing its certificate with a
// fresh quote under its enrolled AK; peer must be that node. A failed check
// quarantines it and revokes its certificates.
func (h *Hub) Renew(ctx context.Context, peer pki.Peer, req EnrollRequest) (*Enrolled, error) {
	if err := h.authorize(peer, pki.ActionRenew, peer.Name); err != nil {
		return nil, err
	}
	e, err := h.finish(ctx, KindRenew, &peer, req)
	h.met.attempt(KindRenew, err)
	return e, err
}

func (h *Hub) finish(ctx context.Context, kind SessionKind, peer *pki.Peer, req EnrollRequest) (*Enrolled, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	action := finalAction(kind)
	// Refusals before the nonce is spent change nothing: an anonymous
	// caller's are audited in summary (a node's, renewing, one by one).
	refused := func(r *Refusal) error {
		if peer == nil {
			return h.refusedAnon(ctx, action, r)
		}
		return h.refused(action, r)
	}
	if peer == nil {
		if err := h.admitAnon(ctx, action); err != nil {
			return nil, err
		}
	}
	now := h.now()
	if r := checkSessionID(req.Session); r != nil {
		return nil, refused(r)
	}
	if err := checkEnroll(req); err != nil {
		return nil, refused(refuse("?", CheckRequest, ErrInvalid, "%v", err))
	}
	sess, err := h.opt.Store.Session(req.Session)
	if err == nil && sess.Kind != kind {
		err = refuse(sess.Name, CheckSession, ErrSessionState, "session %s is a %s session, not %s", sess.ID, sess.Kind, kind)
	}
	if err == nil && (peer == nil || peer.Name == sess.Name) {
		err = h.opt.Store.checkNonce(sess, req.Nonce, now)
	}
	if r := (*Refusal)(nil); errors.As(err, &r) {
		return nil, refused(r)
	} else if err != nil {
		return nil, err
	}
	if peer != nil && peer.Name != sess.Name {
		err := failf(ErrForbidden, "%s may not renew for node %s", peer.Actor(), sess.Name)
		return nil, errors.Join(err, h.record(peer.Actor(), action, sess.Name, err))
	}
	if sess, err = h.opt.Store.TakeNonce(req.Session, req.Nonce, now); err != nil {
		return nil, err
	}
	st := h.opt.Store
	buildID, pred, err := h.expected(sess.Name, sess.Role, req.BuildID)
	if err != nil {
		return nil, st.EndSession(sess.ID, refuse(sess.Name, CheckPolicy, ErrPolicy, "node %s as role %s: %v", sess.Name, sess.Role, err), now)
	}
	switch rb, err := h.retiredFor(sess.Name, sess.Role, buildID); {
	case err != nil:
		return nil, st.EndSession(sess.ID, fmt.Errorf("node %s: retired builds: %w", sess.Name, err), now)
	case rb != nil:
		return nil, st.EndSession(sess.ID, refuse(sess.Name, CheckBuildRetired, ErrBuildRetired, "node %s (role %s) attests build %s: %s", sess.Name, sess.Role, buildID, rb), now)
	}
	start := time.Now()
	err = h.opt.Verifier.VerifyEvidence(req.Evidence, sess.AKPublic, req.Nonce, pred)
	h.met.verified(time.Since(start))
	if err != nil {
		var f *CheckFailure
		if !errors.As(err, &f) {
			return nil, st.EndSession(sess.ID, fmt.Errorf("node %s: verify evidence: %w", sess.Name, err), now)
		}
		reason := reasonOf(f)
		if req.BuildID != buildID {
			reason.Detail += fmt.Sprintf(" (node reports build %s; role %s must run %s)", quote(req.BuildID), sess.Role, buildID)
		}
		return nil, st.Quarantine(sess.ID, reason, req.BuildID, now)
	}
	if req.BuildID != buildID {
		return nil, st.Quarantine(sess.ID, Reason{Check: CheckBuild,
			Detail: fmt.Sprintf("role %s must run build %s; node reports %s although its measurements match %s", sess.Role, buildID, quote(req.BuildID), buildID)},
			req.BuildID, now)
	}
	if err := ctx.Err(); err != nil {
		return nil, st.EndSession(sess.ID, fmt.Errorf("node %s: request abandoned: %w", sess.Name, err), now)
	}
	cert, err := h.opt.CA.SignNodeCSR(req.CSR, sess.Name, sess.Role, h.opt.CertLifetime, now)
	if err != nil {
		if errors.Is(err, pki.ErrBadCSR) || errors.Is(err, pki.ErrKeyType) || errors.Is(err, pki.ErrCSRClaims) {
			return nil, st.EndSession(sess.ID, refuse(sess.Name, CheckCSR, ErrCSR, "%v", err), now)
		}
		return nil, st.EndSession(sess.ID, fmt.Errorf("node %s: sign certificate: %w", sess.Name, err), now)
	}
	node, err := st.CompleteEnrollment(sess.ID, Enrollment{BuildID: buildID,
		Cert: Cert{Serial: pki.SerialString(cert.SerialNumber), NotAfter: cert.NotAfter}}, now)
	if err != nil {
		return nil, err // the certificate never leaves the hub
	}
	return &Enrolled{
		Node:    node,
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		CAPEM:   h.opt.CA.CertPEM(),
	}, nil
}
