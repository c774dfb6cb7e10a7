package hub

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Item 6, hub side: calls with a revoked certificate are refused and leave
// a trace in the audit log, one entry per peer per minute however many.
func TestRevokedCallsAuditedInSummary(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	got := e.mustEnroll(n)
	cert := tls.Certificate{Certificate: [][]byte{got.Cert.Raw}, PrivateKey: n.key, Leaf: got.Cert}
	ctx := context.Background()
	if err := e.hub.Revoke(ctx, operator, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	head, _ := e.store.VerifyAuditChain()
	cl := api.NewEnrollmentClient(dialHub(t, e, addr, &cert))
	for range 5 {
		if _, err := cl.RenewBegin(ctx); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("renewal with a revoked certificate: %v", err)
		}
	}
	entries, _ := e.store.Audit(head.Seq+1, 0)
	if len(entries) != 1 || entries[0].Action != "call.revoked" || !strings.Contains(entries[0].Detail, "revoked") ||
		!strings.Contains(entries[0].Detail, "peer 127.0.0.1") || !strings.Contains(entries[0].Detail, got.Node.CertSerial) {
		t.Fatalf("audit after 5 revoked calls: %+v, want one call.revoked entry naming the serial and peer", entries)
	}
	e.clock.Advance(SummaryEvery)
	if _, err := e.hub.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.lastAudit(); a.Action != ActionRevokedSummary || !strings.HasPrefix(a.Detail, "4 more since") {
		t.Errorf("summary %+v, want the 4 other calls", a)
	}
	if c := e.hub.Counts(); c.Revoked != 5 {
		t.Errorf("revoked count %d, want 5", c.Revoked)
	}
}

// The edge keeps the codes it had before errdefs: a refusal (whatever its
// reason's class) is PermissionDenied; a rate-limited peer gets
// ResourceExhausted.
func TestEnrollmentEdgeCodes(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	cl := api.NewEnrollmentClient(dialHub(t, e, addr, nil))
	ctx := context.Background()
	bad := &api.BeginRequest{Name: strings.Repeat("N", 300), Role: "worker"}
	if _, err := cl.Begin(ctx, bad); status.Code(err) != codes.PermissionDenied || len(status.Convert(err).Message()) > 512 {
		t.Fatalf("malformed claim: %v, want a short PermissionDenied", err)
	}
	var err error
	for range 2 * DefaultAnonBurst {
		if _, err = cl.Begin(ctx, bad); status.Code(err) != codes.PermissionDenied {
			break
		}
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("after a burst of %d calls: %v, want ResourceExhausted", DefaultAnonBurst, err)
	}
}

// Item 5 over the wire: an admin retires a build; node list shows the
// nodes running it; an operator may not.
func TestRetireBuildOverGRPC(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	e.mustEnroll(n)
	ctx := context.Background()
	op := adminClient(t, e, addr, clientCert(t, e, "olga", "operator"))
	if _, err := op.RetireBuild(ctx, "build-worker", "x"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator retired a build: %v", err)
	}
	ad := adminClient(t, e, addr, clientCert(t, e, "alice", "admin"))
	rb, err := ad.RetireBuild(ctx, "build-worker", "CVE-2026-0001")
	if err != nil || rb.BuildID != "build-worker" || rb.By != "alice (admin)" {
		t.Fatalf("retire: %+v %v", rb, err)
	}
	list, err := ad.ListNodes(ctx)
	if err != nil || len(list.Nodes) != 1 || !strings.Contains(list.Nodes[0].Retired, "CVE-2026-0001") {
		t.Errorf("node list after retiring its build: %+v %v", list, err)
	}
}
