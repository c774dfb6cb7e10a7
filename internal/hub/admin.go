package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

// RegisterEK records a TPM's EK hash for node name, the only name it may
// enroll as; see Store.RegisterEK. Operator.
func (h *Hub) RegisterEK(ctx context.Context, peer pki.Peer, name, ekHash string) error {
	if err := h.begin(ctx, peer, pki.ActionRegisterEK, name); err != nil {
		return err
	}
	return h.opt.Store.RegisterEK(peer.Actor(), name, ekHash, h.now())
}

// OpenWindow opens the enrollment window for d (closes it for d = 0).
// Operator; only when the EK policy uses windows; at most MaxWindow.
func (h *Hub) OpenWindow(ctx context.Context, peer pki.Peer, d time.Duration) (Window, error) {
	if err := h.begin(ctx, peer, pki.ActionOpenWindow, "window"); err != nil {
		return Window{}, err
	}
	var err error
	switch {
	case !h.opt.AllowWindow:
		err = failf(ErrState, "the EK policy does not use enrollment windows (admits registered EKs and EK certificates only)")
	case d < 0 || d > h.opt.MaxWindow:
		err = failf(ErrInvalid, "window of %v: want 0 (close) up to %v", d, h.opt.MaxWindow)
	}
	if err != nil {
		return Window{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionOpenWindow), "window", err))
	}
	now := h.now()
	if err := h.opt.Store.SetWindow(peer.Actor(), now.Add(d), now); err != nil {
		return Window{}, err
	}
	return h.opt.Store.Window()
}

// Revoke revokes node name at once: every unexpired certificate it holds
// joins the revocation set in the same transaction, and it stays refused
// until replaced. Operator.
func (h *Hub) Revoke(ctx context.Context, peer pki.Peer, name, detail string) error {
	if err := h.begin(ctx, peer, pki.ActionRevoke, name); err != nil {
		return err
	}
	return h.opt.Store.Revoke(peer.Actor(), name, detail, h.now())
}

// RevokeClient revokes an operator's client certificate (DER) at once:
// the hub refuses it from the next call, nodes from their next fetch of the
// revocation list. It must be a live operator certificate of this CA; node
// certificates go with their node (Revoke). Admin.
func (h *Hub) RevokeClient(ctx context.Context, peer pki.Peer, der []byte, reason string) (RevokedCert, error) {
	if err := h.begin(ctx, peer, pki.ActionRevokeClient, "client certificate"); err != nil {
		return RevokedCert{}, err
	}
	rc, err := h.clientToRevoke(der, reason)
	if err != nil {
		return RevokedCert{}, errors.Join(err, h.record(peer.Actor(), string(pki.ActionRevokeClient), "client certificate", err))
	}
	return rc, h.opt.Store.RevokeClient(peer.Actor(), rc, h.now())
}

func (h *Hub) clientToRevoke(der []byte, reason string) (RevokedCert, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return RevokedCert{}, failf(ErrInvalid, "certificate: %v", err)
	}
	// Not checked against the revocation set: revoking twice is allowed.
	p, err := pki.AuthenticateAgainst(h.opt.CA.Certificate(), cert, h.now(), nil)
	if err != nil {
		return RevokedCert{}, failf(ErrInvalid, "certificate: %v", err)
	}
	if p.Role == pki.RoleNode {
		return RevokedCert{}, failf(ErrInvalid, "%s is a node certificate: revoke the node (kubedos node revoke %s)", p.Name, p.Name)
	}
	return RevokedCert{Serial: p.Serial, Client: p.Actor(), NotAfter: cert.NotAfter, At: h.now(), Reason: reason}, nil
}

// Fence revokes node name and marks it fenced; the caller must then stop
// the node (power off through its target). Operator.
func (h *Hub) Fence(ctx context.Context, peer pki.Peer, name, detail string) error {
	if err := h.begin(ctx, peer, pki.ActionFence, name); err != nil {
		return err
	}
	return h.opt.Store.Fence(peer.Actor(), name, detail, h.now())
}

// Replace retires node name's identity so a fresh TPM can enroll as name
// through the same gate. Operator.
func (h *Hub) Replace(ctx context.Context, peer pki.Peer, name, detail string) error {
	if err := h.begin(ctx, peer, pki.ActionReplace, name); err != nil {
		return err
	}
	return h.opt.Store.Replace(peer.Actor(), name, detail, h.now())
}

// ListNodes lists every node. Reader.
func (h *Hub) ListNodes(ctx context.Context, peer pki.Peer) ([]Node, error) {
	if err := h.begin(ctx, peer, pki.ActionRead, "nodes"); err != nil {
		return nil, err
	}
	return h.opt.Store.Nodes()
}

// GetNode returns one node. Reader.
func (h *Hub) GetNode(ctx context.Context, peer pki.Peer, name string) (Node, error) {
	if err := h.begin(ctx, peer, pki.ActionRead, name); err != nil {
		return Node{}, err
	}
	return h.opt.Store.Node(name)
}

// Audit reads the audit log from sequence number from. Reader.
func (h *Hub) Audit(ctx context.Context, peer pki.Peer, from uint64, limit int) ([]AuditEntry, error) {
	if err := h.begin(ctx, peer, pki.ActionRead, "audit"); err != nil {
		return nil, err
	}
	return h.opt.Store.Audit(from, limit)
}

// Prune deletes expired enrollment sessions and writes the audit summaries
// that are due (refused unauthenticated calls, revoked certificates); run
// it every minute or so.
func (h *Hub) Prune(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.opt.Store.PruneSessions(h.now())
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	if err := h.flushSummaries(); err != nil {
		return n, fmt.Errorf("audit summaries: %w", err)
	}
	return n, nil
}

func (h *Hub) begin(ctx context.Context, peer pki.Peer, action pki.Action, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.authorize(peer, action, target)
}
