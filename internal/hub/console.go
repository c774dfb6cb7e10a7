// The web console the hub serves on the master (internal/console) acts here,
// in process, as the operator using it: a Caller is the admin service for
// one operator certificate, authenticated again on every call exactly as
// the gRPC edge authenticates (chain, validity, revocation list, role) and
// authorized by the same Hub methods, so the role table and the audit are
// the hub's own. ConsoleLogins are the one-time links an operator gets
// from the gRPC ConsoleLogin call to log a browser in without a client
// certificate.

package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
)

// ConsoleLoginTTL is how long a login link may wait to be opened. Short:
// the link is as good as the certificate for one session (the link is
// single use and its session ends with the certificate).
const ConsoleLoginTTL = 2 * time.Minute

// maxConsoleLogins bounds the links waiting to be opened: each is made
// by an authenticated caller, but a loop of calls must not grow the hub.
const maxConsoleLogins = 256

// Audit actions of the console's sessions, besides pki.ActionConsoleLogin.
const ActionConsoleSession = "console.session"

// ErrLoginRefused: a login link that is unknown, used, expired or of a
// certificate no longer valid. One class for all: the browser learns
// nothing about which.
var ErrLoginRefused = errdefs.New(errdefs.ErrUnauthenticated, "login link refused")

// Caller is the admin service in process, acting as one operator
// certificate with at most one role.
type Caller struct {
	s    *Server
	cert *x509.Certificate
	// ceiling caps the certificate's role (a reader session of an admin).
	ceiling pki.Role
}

// As is the admin service acting as cert, with at most ceiling's powers
// (empty: the certificate's role). Nothing is checked until a call: each
// authenticates cert again, so a revoked or expired certificate stops
// working at its next call.
func (s *Server) As(cert *x509.Certificate, ceiling pki.Role) *Caller {
	return &Caller{s: s, cert: cert, ceiling: ceiling}
}

// Peer authenticates the caller now: the certificate as the gRPC edge
// checks it, an operator's (not a node's, not the hub's, which has no
// role), its role capped by the ceiling.
func (c *Caller) Peer(ctx context.Context) (pki.Peer, error) {
	pe, err := c.s.ca.Authenticate(c.cert, c.s.hub.now(), c.s.hub.Revocations())
	if err != nil {
		if errors.Is(err, pki.ErrRevoked) {
			c.s.hub.refusedRevoked(ctx, c.cert, "console")
		}
		return pki.Peer{}, fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
	}
	if pe.Role == pki.RoleNode {
		return pki.Peer{}, fmt.Errorf("%w: %s is a node certificate, not an operator's", errdefs.ErrUnauthenticated, pe.Name)
	}
	if c.ceiling != "" && c.ceiling != pe.Role {
		if !pe.Role.Covers(c.ceiling) {
			return pki.Peer{}, fmt.Errorf("%w: %s may not act as %s", errdefs.ErrPermission, pe.Actor(), c.ceiling)
		}
		pe.Role = c.ceiling
	}
	return pe, nil
}

// Certificate is the certificate the caller acts with.
func (c *Caller) Certificate() *x509.Certificate { return c.cert }

func (c *Caller) admin() adminService {
	return adminService{s: c.s, as: c}
}

// ListNodes is api.AdminClient.ListNodes, as the caller.
func (c *Caller) ListNodes(ctx context.Context) (*api.ListNodesResponse, error) {
	return c.admin().ListNodes(ctx, &api.ListNodesRequest{})
}

// GetNode is api.AdminClient.GetNode, as the caller.
func (c *Caller) GetNode(ctx context.Context, name string) (*api.Node, error) {
	return c.admin().GetNode(ctx, &api.NodeRequest{Name: name})
}

// Audit is api.AdminClient.Audit, as the caller.
func (c *Caller) Audit(ctx context.Context, from uint64, limit int) (*api.AuditResponse, error) {
	return c.admin().Audit(ctx, &api.AuditRequest{From: from, Limit: limit})
}

// AssignBuild is api.AdminClient.AssignBuild, as the caller.
func (c *Caller) AssignBuild(ctx context.Context, name string, manifest, signature []byte) (*api.Node, error) {
	return c.admin().AssignBuild(ctx, &api.AssignBuildRequest{Name: name, Manifest: manifest, Signature: signature})
}

// Revoke is api.AdminClient.Revoke, as the caller.
func (c *Caller) Revoke(ctx context.Context, name, reason string) (*api.Node, error) {
	return c.admin().Revoke(ctx, &api.NodeRequest{Name: name, Reason: reason})
}

// Fence is api.AdminClient.Fence, as the caller.
func (c *Caller) Fence(ctx context.Context, name, reason string) (*api.Node, error) {
	return c.admin().Fence(ctx, &api.NodeRequest{Name: name, Reason: reason})
}

// Replace is api.AdminClient.Replace, as the caller.
func (c *Caller) Replace(ctx context.Context, name, reason string) (*api.Node, error) {
	return c.admin().Replace(ctx, &api.NodeRequest{Name: name, Reason: reason})
}

// ListRuns is api.RunsClient.ListRuns, as the caller.
func (c *Caller) ListRuns(ctx context.Context, limit int) (*api.ListRunsResponse, error) {
	pe, err := c.Peer(ctx)
	if err != nil {
		return nil, err
	}
	runs, err := c.s.hub.Runs(ctx, pe, limit)
	if err != nil {
		return nil, err
	}
	return &api.ListRunsResponse{Runs: runs}, nil
}

// ConsoleLogins are the login links waiting to be opened, in memory only:
// a restarted hub forgets them (they live two minutes anyway).
type ConsoleLogins struct {
	s *Server
	// url is the console's base address, told to the caller.
	url string

	mu     sync.Mutex
	grants map[[sha256.Size]byte]consoleGrant // by the token's hash
}

type consoleGrant struct {
	cert    *x509.Certificate
	role    pki.Role
	expires time.Time
}

// ServeConsole makes the hub answer ConsoleLogin with links into the
// console at url (https://MASTER:8443) and returns where the console
// redeems them. Call it before Serve; a hub without it refuses
// ConsoleLogin (it serves no console).
func (s *Server) ServeConsole(url string) *ConsoleLogins {
	l := &ConsoleLogins{s: s, url: url, grants: map[[sha256.Size]byte]consoleGrant{}}
	s.mu.Lock()
	s.logins = l
	s.mu.Unlock()
	return l
}

func (s *Server) consoleLogins() *ConsoleLogins {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Mint makes a login link for cert with role (empty: the certificate's),
// audited as the caller. The certificate must be a valid operator's of
// this CA, not revoked, with a role that covers role.
func (l *ConsoleLogins) Mint(ctx context.Context, cert *x509.Certificate, role pki.Role) (*api.ConsoleLogin, error) {
	h := l.s.hub
	pe, err := l.s.As(cert, "").Peer(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.begin(ctx, pe, pki.ActionConsoleLogin, "console"); err != nil {
		return nil, err
	}
	if role == "" {
		role = pe.Role
	}
	if !pe.Role.Covers(role) {
		err := failf(ErrForbidden, "%s may not log in to the console as %s", pe.Actor(), role)
		return nil, errors.Join(err, h.record(pe.Actor(), string(pki.ActionConsoleLogin), "console", err))
	}
	now := h.now()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	exp := now.Add(ConsoleLoginTTL)
	if cert.NotAfter.Before(exp) {
		exp = cert.NotAfter
	}
	l.mu.Lock()
	for k, g := range l.grants {
		if !now.Before(g.expires) {
			delete(l.grants, k)
		}
	}
	full := len(l.grants) >= maxConsoleLogins
	if !full {
		l.grants[sum] = consoleGrant{cert: cert, role: role, expires: exp}
	}
	l.mu.Unlock()
	if full {
		err := failf(ErrState, "%d console login links are waiting to be opened; try again in %v", maxConsoleLogins, ConsoleLoginTTL)
		return nil, errors.Join(err, h.record(pe.Actor(), string(pki.ActionConsoleLogin), "console", err))
	}
	// The audit names the link by the start of its hash, never the token.
	err = h.opt.Store.Record(AuditEntry{Time: now, Actor: pe.Actor(), Action: string(pki.ActionConsoleLogin), Target: "console", Outcome: OutcomeOK,
		Detail: fmt.Sprintf("one-time login link %s for role %s, valid until %s", hex.EncodeToString(sum[:4]), role, exp.Format(time.RFC3339))})
	if err != nil {
		return nil, err
	}
	return &api.ConsoleLogin{Token: token, URL: l.url, Operator: pe.Name, Role: string(role), ExpiresAt: exp}, nil
}

// Redeem opens the link of token, once: the caller it was made for, with
// its role, after authenticating the certificate again. The session is
// audited under the operator; a known link refused (expired, certificate
// revoked) too. remote is the browser's address, for the audit.
func (l *ConsoleLogins) Redeem(ctx context.Context, token, remote string) (*Caller, error) {
	h := l.s.hub
	sum := sha256.Sum256([]byte(token))
	l.mu.Lock()
	g, ok := l.grants[sum]
	delete(l.grants, sum) // single use, even when refused below
	l.mu.Unlock()
	if !ok {
		// Unknown or used: nobody to name in the audit, and 256 random
		// bits are not guessed.
		return nil, fmt.Errorf("%w: unknown or already used", ErrLoginRefused)
	}
	c := l.s.As(g.cert, g.role)
	// The certificate was authenticated when the link was made: its name
	// is a checked CN.
	actor := pki.Peer{Name: g.cert.Subject.CommonName, Role: g.role}.Actor()
	link := hex.EncodeToString(sum[:4])
	if now := h.now(); !now.Before(g.expires) {
		err := fmt.Errorf("%w: link %s expired at %s", ErrLoginRefused, link, g.expires.Format(time.RFC3339))
		return nil, errors.Join(err, h.opt.Store.Record(AuditEntry{Time: now, Actor: actor, Action: ActionConsoleSession, Target: "console",
			Outcome: OutcomeDenied, Detail: err.Error()}))
	}
	pe, err := c.Peer(ctx)
	if err != nil {
		err = fmt.Errorf("%w: link %s: %w", ErrLoginRefused, link, err)
		return nil, errors.Join(err, h.opt.Store.Record(AuditEntry{Time: h.now(), Actor: actor, Action: ActionConsoleSession, Target: "console",
			Outcome: OutcomeDenied, Detail: err.Error()}))
	}
	return c, l.Opened(pe, "login link "+link, remote)
}

// Opened audits a console session opened for pe (by a login link or a
// client certificate) from remote.
func (l *ConsoleLogins) Opened(pe pki.Peer, how, remote string) error {
	return l.s.hub.opt.Store.Record(AuditEntry{Time: l.s.hub.now(), Actor: pe.Actor(), Action: ActionConsoleSession, Target: "console",
		Outcome: OutcomeOK, Detail: fmt.Sprintf("session opened by %s from %s", how, quote(remote))})
}

func (a adminService) ConsoleLogin(ctx context.Context, r *api.ConsoleLoginRequest) (*api.ConsoleLogin, error) {
	l := a.s.consoleLogins()
	if l == nil {
		return nil, failf(ErrState, "this hub serves no web console (the hub serves it on the master after hand-over; elsewhere run kubedos console)")
	}
	cert, err := a.s.peerCertificate(ctx)
	if err != nil {
		return nil, err
	}
	var role pki.Role
	if r.Role != "" {
		if role, err = pki.ParseRole(r.Role); err != nil {
			return nil, failf(ErrInvalid, "role: %v", err)
		}
	}
	return l.Mint(ctx, cert, role)
}
