package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
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
		conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: api.HubServerName, MinVersion: tls.VersionTLS13}
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
	if got.MaxAgeSeconds != 600 {
		t.Errorf("max age told to nodes: %ds, want the default 600s", got.MaxAgeSeconds)
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

// TestRevokeClient: an admin revokes an operator's certificate; it joins
// the list nodes fetch and the hub refuses it from the next call. Node
// certificates, foreign certificates and non-admins are refused, each
// attempt audited.
func TestRevokeClient(t *testing.T) {
	e := newEnv(t)
	e.clock = &clock{t: time.Now()}
	e.newHub()
	ctx := context.Background()
	rita := clientCert(t, e, "rita", pki.RoleReader)
	serial := pki.SerialString(rita.Leaf.SerialNumber)

	if _, err := e.hub.RevokeClient(ctx, operator, rita.Leaf.Raw, "left"); !errors.Is(err, ErrForbidden) {
		t.Errorf("an operator revoking a client certificate: %v, want ErrForbidden", err)
	}
	w1 := newNode(t, "w-1", "worker")
	e.register(w1)
	c1 := e.mustEnroll(w1)
	if _, err := e.hub.RevokeClient(ctx, admin, c1.Cert.Raw, "x"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node revoke w-1") {
		t.Errorf("revoking a node certificate as a client: %v", err)
	}
	foreign := newEnv(t)
	other := clientCert(t, foreign, "mallory", pki.RoleAdmin)
	if _, err := e.hub.RevokeClient(ctx, admin, other.Leaf.Raw, "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("revoking another CA's certificate: %v, want ErrInvalid", err)
	}
	if _, err := e.hub.RevokeClient(ctx, admin, []byte("junk"), "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("revoking junk: %v, want ErrInvalid", err)
	}

	rc, err := e.hub.RevokeClient(ctx, admin, rita.Leaf.Raw, "left the team")
	if err != nil || rc.Serial != serial || rc.Client != "rita (reader)" {
		t.Fatalf("revoke rita: %+v, %v", rc, err)
	}
	if !slices.Contains(e.hub.Revocations().Serials(), serial) {
		t.Error("the revoked serial is not in the live revocation set")
	}
	if _, err := e.ca.Authenticate(rita.Leaf, time.Now(), e.hub.Revocations()); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("rita after revocation: %v, want ErrRevoked", err)
	}
	if _, err := e.hub.RevokeClient(ctx, admin, rita.Leaf.Raw, "again"); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	// The revocation survives a restart of the hub.
	e.newHub()
	if !slices.Contains(e.hub.Revocations().Serials(), serial) {
		t.Error("the revocation did not survive a hub restart")
	}
	entries, err := e.store.Audit(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused int
	for _, en := range entries {
		if en.Action == string(pki.ActionRevokeClient) {
			if en.Outcome == OutcomeOK {
				ok++
			} else {
				refused++
			}
		}
	}
	if ok != 2 || refused != 4 {
		t.Errorf("audit: %d ok and %d refused client.revoke entries, want 2 and 4", ok, refused)
	}
}
