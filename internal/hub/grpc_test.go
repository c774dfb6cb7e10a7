package hub

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// serveTLS runs the hub's gRPC server on loopback; the env's clock is t0,
// so certificates are issued at real time here for TLS to accept them.
func serveTLS(t *testing.T, e *env) string {
	t.Helper()
	e.clock = &clock{t: time.Now()}
	e.newHub()
	return serveHub(t, e.hub, e.ca)
}

// serveHub serves h's gRPC API on a loopback port until the test ends.
func serveHub(t *testing.T, h *Hub, ca *pki.CA) string {
	t.Helper()
	return serveLoopback(t, newTestServer(t, h, ca).Serve)
}

// serveHubMetrics serves h's /metrics on a loopback port until the test
// ends.
func serveHubMetrics(t *testing.T, h *Hub, ca *pki.CA) string {
	t.Helper()
	return serveLoopback(t, newTestServer(t, h, ca).ServeMetrics)
}

func newTestServer(t *testing.T, h *Hub, ca *pki.CA) *Server {
	t.Helper()
	srv, err := NewServer(h, ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// serveLoopback runs serve on a loopback port until the test ends; an
// error it returns fails the test.
func serveLoopback(t *testing.T, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// dialHub connects to the test hub over TLS, with cert as the client
// certificate when given; the connection closes with the test.
func dialHub(t *testing.T, e *env, addr string, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conf := pki.HubClientTLS(e.ca.Pool())
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	cc, err := grpc.NewClient(addr, append(api.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func adminClient(t *testing.T, e *env, addr string, cert *tls.Certificate) *api.AdminClient {
	t.Helper()
	return api.NewAdminClient(dialHub(t, e, addr, cert))
}

func clientCert(t *testing.T, e *env, name string, role pki.Role) *tls.Certificate {
	t.Helper()
	is, err := e.ca.IssueClient(name, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestAdminAPIAuthentication: every admin call needs a client certificate
// from the cluster CA with a role that allows it, not revoked.
func TestAdminAPIAuthentication(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	ctx := context.Background()

	if _, err := adminClient(t, e, addr, nil).ListNodes(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no client certificate: got %v, want Unauthenticated", err)
	}
	other := newCA(t)
	is, _ := other.IssueClient("mallory", pki.RoleAdmin, time.Hour, time.Now())
	if c, err := is.TLSCertificate(); err == nil {
		if _, err := adminClient(t, e, addr, &c).ListNodes(ctx); err == nil {
			t.Error("a certificate from another CA was accepted")
		}
	}
	reader := adminClient(t, e, addr, clientCert(t, e, "rita", pki.RoleReader))
	if _, err := reader.ListNodes(ctx); err != nil {
		t.Errorf("reader listing nodes: %v", err)
	}
	if _, err := reader.Revoke(ctx, "w-1", "x"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader revoking: got %v, want PermissionDenied", err)
	}
	op := adminClient(t, e, addr, clientCert(t, e, "olga", pki.RoleOperator))
	if _, err := op.GetNode(ctx, "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("unknown node: got %v, want NotFound", err)
	}
	if _, err := reader.OpenWindow(ctx, time.Minute); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader opening the window: got %v, want PermissionDenied", err)
	}
	if _, err := op.OpenWindow(ctx, time.Minute); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("window under a registered-EK policy: got %v, want FailedPrecondition", err)
	}
}

// TestRevokedNodeCertRefused: once revoked, a node's certificate no longer
// authenticates anywhere on the hub's API.
func TestRevokedNodeCertRefused(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	got := e.mustEnroll(n)
	cert := tls.Certificate{Certificate: [][]byte{got.Cert.Raw}, PrivateKey: n.key, Leaf: got.Cert}
	ctx := context.Background()
	nodeClient := adminClient(t, e, addr, &cert)
	if _, err := nodeClient.ListNodes(ctx); status.Code(err) == codes.Unauthenticated {
		t.Fatalf("a valid node certificate did not authenticate: %v", err)
	}
	if err := e.hub.Revoke(ctx, operator, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeClient.ListNodes(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked node certificate: got %v, want Unauthenticated", err)
	}
}

// TestRenewOverGRPC: renewal needs the node's own certificate and a fresh
// quote; without a certificate it is refused before any nonce is issued.
func TestRenewOverGRPC(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	first := e.mustEnroll(n)
	ctx := context.Background()
	dial := func(cert *tls.Certificate) *api.EnrollmentClient {
		return api.NewEnrollmentClient(dialHub(t, e, addr, cert))
	}
	if _, err := dial(nil).RenewBegin(ctx); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("renewal without a certificate: %v, want Unauthenticated", err)
	}
	cl := dial(&tls.Certificate{Certificate: [][]byte{first.Cert.Raw}, PrivateKey: n.key, Leaf: first.Cert})
	nonce, err := cl.RenewBegin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := n.tpm.quote(nonce.Nonce, n.pcrs, "log-ok")
	got, err := cl.Renew(ctx, &api.EnrollRequest{Session: nonce.Session, Nonce: nonce.Nonce, BuildID: n.buildID, CSR: n.csrDER(t),
		Evidence: attest.Evidence(ev)})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if len(got.Certificate) == 0 || string(got.Certificate) == string(first.Cert.Raw) {
		t.Fatal("renewal returned no new certificate")
	}
	if _, err := cl.Renew(ctx, &api.EnrollRequest{Session: nonce.Session, Nonce: nonce.Nonce, BuildID: n.buildID, CSR: n.csrDER(t),
		Evidence: attest.Evidence(ev)}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("replayed renewal: %v, want PermissionDenied", err)
	}
}
