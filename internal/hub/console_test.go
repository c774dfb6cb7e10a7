package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// consoleHub serves a hub over gRPC with the console's login links on.
func consoleHub(t *testing.T) (*env, *Server, *ConsoleLogins, string) {
	t.Helper()
	e := newEnv(t)
	e.clock = &clock{t: time.Now()}
	e.newHub()
	srv := newTestServer(t, e.hub, e.ca)
	logins := srv.ServeConsole("https://10.20.0.10:8443")
	return e, srv, logins, serveLoopback(t, srv.Serve)
}

// lastAudit is the newest audit entry with action.
func lastAudit(t *testing.T, e *env, action string) AuditEntry {
	t.Helper()
	all, err := e.store.Audit(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Action == action {
			return all[i]
		}
	}
	t.Fatalf("no %s entry in the audit log", action)
	return AuditEntry{}
}

// TestConsoleLogin: a login link is minted over mTLS for the caller, at
// most its role, audited; it opens one session as that caller, once,
// within two minutes, and not for a revoked certificate.
func TestConsoleLogin(t *testing.T) {
	e, _, logins, addr := consoleHub(t)
	ctx := context.Background()
	olgaCert := clientCert(t, e, "olga", pki.RoleOperator)
	olga := adminClient(t, e, addr, olgaCert)

	got, err := olga.ConsoleLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Operator != "olga" || got.Role != "operator" || got.URL != "https://10.20.0.10:8443" || len(got.Token) != 64 {
		t.Errorf("login link: %+v", got)
	}
	if d := time.Until(got.ExpiresAt); d > ConsoleLoginTTL+time.Second || d <= 0 {
		t.Errorf("link valid for %v, want at most %v", d, ConsoleLoginTTL)
	}
	minted := lastAudit(t, e, string(pki.ActionConsoleLogin))
	if minted.Actor != "olga (operator)" || minted.Outcome != OutcomeOK || strings.Contains(minted.Detail, got.Token) {
		t.Errorf("mint audited as %+v (the token must not be in the log)", minted)
	}

	// A forged token opens nothing.
	if _, err := logins.Redeem(ctx, strings.Repeat("0", 64), "192.0.2.1:1"); !errors.Is(err, ErrLoginRefused) {
		t.Errorf("forged token: %v, want ErrLoginRefused", err)
	}
	c, err := logins.Redeem(ctx, got.Token, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	pe, err := c.Peer(ctx)
	if err != nil || pe.Name != "olga" || pe.Role != pki.RoleOperator {
		t.Errorf("session acts as %+v, %v; want olga (operator)", pe, err)
	}
	if s := lastAudit(t, e, ActionConsoleSession); s.Actor != "olga (operator)" || s.Outcome != OutcomeOK || !strings.Contains(s.Detail, "192.0.2.1") {
		t.Errorf("session audited as %+v", s)
	}
	// Replayed: single use.
	if _, err := logins.Redeem(ctx, got.Token, "192.0.2.1:1"); !errors.Is(err, ErrLoginRefused) {
		t.Errorf("replayed token: %v, want ErrLoginRefused", err)
	}
	// What the session does is done and audited as olga, by the hub's table.
	if _, err := c.Revoke(ctx, "w-1", "from the console"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("operator revoking an unknown node: %v, want not found (authorized, then looked up)", err)
	}
	if _, err := c.AssignBuild(ctx, "w-1", nil, nil); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("operator upgrading from the console: %v, want permission denied", err)
	}
	if d := lastAudit(t, e, string(pki.ActionUpgrade)); d.Actor != "olga (operator)" || d.Outcome != OutcomeDenied {
		t.Errorf("refused upgrade audited as %+v", d)
	}

	// Expired: two minutes and it is gone, the refusal audited.
	late, err := olga.ConsoleLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(ConsoleLoginTTL + time.Second)
	if _, err := logins.Redeem(ctx, late.Token, "192.0.2.1:1"); !errors.Is(err, ErrLoginRefused) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v, want ErrLoginRefused, expired", err)
	}
	if s := lastAudit(t, e, ActionConsoleSession); s.Outcome != OutcomeDenied || s.Actor != "olga (operator)" {
		t.Errorf("expired link audited as %+v", s)
	}
}

// TestConsoleLoginRole: a link's role is at most the certificate's; a
// lower one may be asked for; a node certificate gets none.
func TestConsoleLoginRole(t *testing.T) {
	e, _, logins, addr := consoleHub(t)
	ctx := context.Background()
	alice := adminClient(t, e, addr, clientCert(t, e, "alice", pki.RoleAdmin))
	got, err := alice.ConsoleLogin(ctx, "reader")
	if err != nil || got.Role != "reader" {
		t.Fatalf("admin asking for a reader session: %+v, %v", got, err)
	}
	c, err := logins.Redeem(ctx, got.Token, "192.0.2.2:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, "w-1", "x"); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("a reader session of an admin revoking: %v, want permission denied", err)
	}
	rita := adminClient(t, e, addr, clientCert(t, e, "rita", pki.RoleReader))
	if _, err := rita.ConsoleLogin(ctx, "admin"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader asking for an admin session: %v, want PermissionDenied", err)
	}
	if d := lastAudit(t, e, string(pki.ActionConsoleLogin)); d.Actor != "rita (reader)" || d.Outcome != OutcomeDenied {
		t.Errorf("refused escalation audited as %+v", d)
	}
	if _, err := rita.ConsoleLogin(ctx, "root"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown role: %v, want InvalidArgument", err)
	}
	// A node's certificate is no operator's.
	w1 := newNode(t, "w-1", "worker")
	e.register(w1)
	nc := e.mustEnroll(w1)
	node := adminClient(t, e, addr, &tls.Certificate{Certificate: [][]byte{nc.Cert.Raw}, PrivateKey: w1.key, Leaf: nc.Cert})
	if _, err := node.ConsoleLogin(ctx, ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("node certificate asking for a login: %v, want Unauthenticated", err)
	}
	// A hub without a console says so.
	plain := adminClient(t, e, serveHub(t, e.hub, e.ca), clientCert(t, e, "alice", pki.RoleAdmin))
	if _, err := plain.ConsoleLogin(ctx, ""); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("hub serving no console: %v, want FailedPrecondition", err)
	}
}

// TestConsoleRevokedCertificate: revoking an operator's certificate
// refuses its unopened link and ends its open sessions at their next call.
func TestConsoleRevokedCertificate(t *testing.T) {
	e, srv, logins, addr := consoleHub(t)
	ctx := context.Background()
	olgaCert := clientCert(t, e, "olga", pki.RoleOperator)
	olga := adminClient(t, e, addr, olgaCert)
	open, err := olga.ConsoleLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := olga.ConsoleLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	session, err := logins.Redeem(ctx, open.Token, "192.0.2.3:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := session.ListNodes(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.RevokeClient(ctx, admin, olgaCert.Certificate[0], "laptop lost"); err != nil {
		t.Fatal(err)
	}
	if _, err := session.ListNodes(ctx); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("open session after its certificate was revoked: %v, want unauthenticated", err)
	}
	if _, err := logins.Redeem(ctx, waiting.Token, "192.0.2.3:1"); !errors.Is(err, ErrLoginRefused) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("link of a revoked certificate: %v, want refused, revoked", err)
	}
	// The hub's own certificate has no role: it acts as nobody.
	hubCert, err := e.ca.IssueServer([]string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.As(hubCert.Cert, "").ListNodes(ctx); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("the hub's certificate as a console user: %v, want unauthenticated", err)
	}
}
