package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// fakeRevocationHub serves a revocation list and remembers who asked.
type fakeRevocationHub struct {
	mu      sync.Mutex
	serials []string
	callers []string
}

func (h *fakeRevocationHub) Revoked(ctx context.Context, _ *api.RevokedRequest) (*api.RevokedResponse, error) {
	p, _ := peer.FromContext(ctx)
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no certificate")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.callers = append(h.callers, ti.State.PeerCertificates[0].Subject.CommonName)
	return &api.RevokedResponse{Serials: append([]string{}, h.serials...)}, nil
}

func TestRefreshRevocations(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	victim, err := ca.IssueClient("eve", pki.RoleAdmin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hub := &fakeRevocationHub{serials: []string{pki.SerialString(victim.Cert.SerialNumber)}}
	addr, s := serveFakeHub(t, ca, func(s *grpc.Server) { api.RegisterRevocations(s, hub) })

	state := t.TempDir()
	idDir := filepath.Join(state, "identity")
	writeNodeIdentity(t, ca, idDir, "w-1")
	file := filepath.Join(state, RevokedFile)
	l, err := LoadRevocationList(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg := EnrollConfig{Hub: addr, CA: ca.Certificate(), Name: "w-1", StateDir: idDir}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	clock := newFakeClock()
	go func() {
		defer close(done)
		RefreshRevocations(ctx, cfg, l, 30*time.Second, clock, t.Logf)
	}()
	// Fetched at once, then parked until the next round is due.
	clock.awaitWaiters(t, 1)
	if !l.Set().Revoked(victim.Cert.SerialNumber) {
		t.Fatal("revocation not fetched at start")
	}
	second, err := ca.IssueClient("mallory", pki.RoleOperator, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	hub.serials = append(hub.serials, pki.SerialString(second.Cert.SerialNumber))
	hub.mu.Unlock()
	clock.Advance(30 * time.Second)
	clock.awaitWaiters(t, 1)
	if !l.Set().Revoked(second.Cert.SerialNumber) {
		t.Fatal("a revocation made later not fetched in the next round")
	}
	cancel()
	<-done
	if at, err := l.Fetched(); at.IsZero() || err != nil {
		t.Errorf("Fetched = %s, %v", at, err)
	}
	hub.mu.Lock()
	caller := hub.callers[0]
	hub.mu.Unlock()
	if caller != "w-1" {
		t.Errorf("hub saw caller %q, want the node's certificate", caller)
	}

	// Kept on the state partition: a reboot with the hub away forgets nothing.
	again, err := LoadRevocationList(file)
	if err != nil || !again.Set().Revoked(victim.Cert.SerialNumber) {
		t.Fatalf("reloaded list: %v, %v", again.Set().Serials(), err)
	}
	if at, _ := again.Fetched(); at.IsZero() {
		t.Error("reloaded list lost its fetch time")
	}
	if err := os.WriteFile(file, []byte(`{"serials":["ZZ"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if bad, err := LoadRevocationList(file); err == nil || !strings.Contains(err.Error(), file) || bad.Set().Len() != 0 {
		t.Errorf("corrupt list: %v", err)
	}

	// An unreachable hub: the failure is recorded, what is known is kept.
	s.Stop()
	cfg.Hub = "127.0.0.1:1"
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := FetchRevocations(ctx, cfg); err == nil {
		t.Error("fetch from nowhere succeeded")
	}
}
