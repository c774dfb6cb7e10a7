package agent

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// connHub serves a revocation list and remembers from which connection
// (the caller's address) and certificate each call came; fail makes the
// next call fail.
type connHub struct {
	mu    sync.Mutex
	conns map[string]bool
	certs map[string]bool
	fail  bool
}

func (h *connHub) Revoked(ctx context.Context, _ *api.RevokedRequest) (*api.RevokedResponse, error) {
	p, _ := peer.FromContext(ctx)
	ti, _ := p.AuthInfo.(credentials.TLSInfo)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns[p.Addr.String()] = true
	if len(ti.State.PeerCertificates) > 0 {
		h.certs[ti.State.PeerCertificates[0].SerialNumber.String()] = true
	}
	if h.fail {
		h.fail = false
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	return &api.RevokedResponse{}, nil
}

func (h *connHub) counts() (conns, certs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns), len(h.certs)
}

// The periodic calls of an enrolled node share one connection, made again
// when the node's certificate changed, after a failed call, and when the
// hub moved.
func TestHubLinkSharesOneConnection(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	hub := &connHub{conns: map[string]bool{}, certs: map[string]bool{}}
	addr, _ := serveFakeHub(t, ca, func(s *grpc.Server) { api.RegisterRevocations(s, hub) })
	idDir := filepath.Join(t.TempDir(), "identity")
	writeNodeIdentity(t, ca, idDir, "w-1")
	hubFile := filepath.Join(t.TempDir(), "hub")
	cfg := EnrollConfig{Hub: addr, HubFile: hubFile, CA: ca.Certificate(), Name: "w-1", StateDir: idDir, link: &hubLink{}}
	defer cfg.link.Close()
	ctx := context.Background()
	call := func() error { _, err := FetchRevocations(ctx, cfg); return err }
	expect := func(what string, conns, certs int) {
		t.Helper()
		if c, s := hub.counts(); c != conns || s != certs {
			t.Fatalf("%s: %d connections with %d certificates, want %d with %d", what, c, s, conns, certs)
		}
	}
	for range 5 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	expect("five calls", 1, 1)

	writeNodeIdentity(t, ca, idDir, "w-1") // a renewal
	for range 2 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	expect("after a renewal", 2, 2)

	hub.mu.Lock()
	hub.fail = true
	hub.mu.Unlock()
	if err := call(); err == nil {
		t.Fatal("the failing call succeeded")
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	expect("after a failed call", 3, 2)

	moved := &connHub{conns: map[string]bool{}, certs: map[string]bool{}}
	addr2, _ := serveFakeHub(t, ca, func(s *grpc.Server) { api.RegisterRevocations(s, moved) })
	if err := os.WriteFile(hubFile, []byte(addr2+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if c, _ := moved.counts(); c != 1 {
		t.Errorf("after the hand-over the moved hub had %d connections, want 1", c)
	}
	expect("after the hand-over (the old hub)", 3, 2)

	// Without a link (enrollment, tests) each call has its own.
	cfg.link, cfg.HubFile = nil, ""
	for range 2 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	expect("two calls without a link", 5, 2)
}
