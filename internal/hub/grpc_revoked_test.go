package hub

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TestRevokedList: a node with a valid certificate reads the revocation
// list; without a certificate, or once revoked itself, it may not.
func TestRevokedList(t *testing.T) {
	e := newEnv(t)
	e.clock = &clock{t: time.Now()}
	e.newHub()
	srv, err := NewServer(e.hub, e.ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	registerRevocations(srv)
	registerRevocations(srv) // idempotent, whether or not NewServer already did it
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })

	dial := func(cert *tls.Certificate) *api.RevocationsClient {
		conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: ServerName, MinVersion: tls.VersionTLS13}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		cc, err := grpc.NewClient(lis.Addr().String(), append(api.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return api.NewRevocationsClient(cc)
	}
	if _, err := dial(nil).Revoked(ctx); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no certificate: %v, want Unauthenticated", err)
	}
	w1, w2 := newNode(t, "w-1", "worker"), newNode(t, "w-2", "worker")
	e.register(w1)
	e.register(w2)
	c1, c2 := e.mustEnroll(w1), e.mustEnroll(w2)
	node1 := dial(&tls.Certificate{Certificate: [][]byte{c1.Cert.Raw}, PrivateKey: w1.key, Leaf: c1.Cert})
	node2 := dial(&tls.Certificate{Certificate: [][]byte{c2.Cert.Raw}, PrivateKey: w2.key, Leaf: c2.Cert})
	got, err := node1.Revoked(ctx)
	if err != nil || len(got.Serials) != 0 {
		t.Fatalf("before any revocation: %+v, %v", got, err)
	}
	if err := e.hub.Revoke(ctx, operator, "w-2", "test"); err != nil {
		t.Fatal(err)
	}
	got, err = node1.Revoked(ctx)
	if err != nil || !slices.Contains(got.Serials, pki.SerialString(c2.Cert.SerialNumber)) {
		t.Fatalf("after revoking w-2: %+v, %v; want its serial %s", got, err, pki.SerialString(c2.Cert.SerialNumber))
	}
	if _, err := node2.Revoked(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked node reading the list: %v, want Unauthenticated", err)
	}
	reader := dial(clientCert(t, e, "rita", pki.RoleReader))
	if _, err := reader.Revoked(ctx); err != nil {
		t.Errorf("reader reading the list: %v", err)
	}
}
