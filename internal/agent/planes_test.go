package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// fakePlanesHub answers joins with ifcs and remembers the keys and caller.
type fakePlanesHub struct {
	mu     sync.Mutex
	ifcs   []wg.Interface
	keys   map[spec.Plane]string
	caller string
}

func (h *fakePlanesHub) Join(ctx context.Context, r *api.JoinPlanesRequest) (*api.JoinPlanesResponse, error) {
	p, _ := peer.FromContext(ctx)
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no certificate")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys, h.caller = r.Keys, ti.State.PeerCertificates[0].Subject.CommonName
	return &api.JoinPlanesResponse{Interfaces: h.ifcs}, nil
}

func (h *fakePlanesHub) answer(ifcs []wg.Interface) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ifcs = ifcs
}

// recordingApplier records each interface applied and with which key.
type recordingApplier struct {
	mu      sync.Mutex
	applied []string
	fail    error
}

func (a *recordingApplier) apply(_ context.Context, ifc wg.Interface, priv wgtypes.Key) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.applied = append(a.applied, ifc.Name+" "+priv.PublicKey().String())
	return nil
}

func planeIfcs(peers ...string) []wg.Interface {
	var out []wg.Interface
	for i, p := range spec.Planes {
		ifc := wg.Interface{Plane: p, Name: wg.InterfaceName(p), Address: "10.7" + string(rune('7'+i)) + ".0.21/24", ListenPort: 51820 + i, Peers: []wg.Peer{}}
		for _, name := range peers {
			ifc.Peers = append(ifc.Peers, wg.Peer{Name: name, PublicKey: strings.Repeat("A", 43) + "=", AllowedIPs: []string{"10.77.0.0/24"}})
		}
		out = append(out, ifc)
	}
	return out
}

func TestPlanes(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	hub := &fakePlanesHub{ifcs: planeIfcs()}
	addr, s := serveFakeHub(t, ca, func(s *grpc.Server) { api.RegisterPlanes(s, hub) })

	state := t.TempDir()
	idDir := filepath.Join(state, "identity")
	writeNodeIdentity(t, ca, idDir, "w-1")
	cfg := EnrollConfig{Hub: addr, CA: ca.Certificate(), Name: "w-1", StateDir: idDir}
	rec := &recordingApplier{}
	p := NewPlanes(cfg, filepath.Join(state, PlanesDir), rec.apply, t.Logf)
	keys, err := wg.LoadOrCreateKeys(filepath.Join(state, PlanesDir))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if err := p.Once(ctx, keys); err != nil {
		t.Fatal(err)
	}
	// Each plane applied with its own key; the hub got the public halves
	// from the node's own certificate.
	if len(rec.applied) != 3 || rec.applied[0] != "wg-control "+keys[spec.PlaneControl].PublicKey().String() ||
		rec.applied[1] != "wg-obs "+keys[spec.PlaneObservability].PublicKey().String() {
		t.Errorf("applied %v", rec.applied)
	}
	if hub.caller != "w-1" || hub.keys[spec.PlaneKubernetes] != keys[spec.PlaneKubernetes].PublicKey().String() {
		t.Errorf("hub saw %s with %v", hub.caller, hub.keys)
	}
	// The same answer again applies nothing: live sessions are left alone.
	if err := p.Once(ctx, keys); err != nil || len(rec.applied) != 3 {
		t.Errorf("a second join with no change applied again: %v, %v", rec.applied, err)
	}
	// A new peer is applied.
	hub.answer(planeIfcs("master"))
	if err := p.Once(ctx, keys); err != nil || len(rec.applied) != 6 {
		t.Errorf("a new peer was not applied: %v, %v", rec.applied, err)
	}
	ifcs, joined, err := p.Report()
	if err != nil || joined.IsZero() || len(ifcs) != 3 || ifcs[0].Peers[0].Name != "master" {
		t.Errorf("report: %+v %s %v", ifcs, joined, err)
	}
	// The firewall follows each change; if it cannot, the join fails and
	// is retried with the same answer.
	var fw [][]wg.Interface
	p.AfterApply = func(_ context.Context, ifcs []wg.Interface) error {
		fw = append(fw, ifcs)
		if len(fw) == 1 {
			return errors.New("nft: no such file")
		}
		return nil
	}
	hub.answer(planeIfcs("master", "w-9"))
	if err := p.Once(ctx, keys); err == nil || !strings.Contains(err.Error(), "nft") {
		t.Errorf("a firewall failure was not reported: %v", err)
	}
	if err := p.Once(ctx, keys); err != nil || len(fw) != 2 || len(fw[1][0].Peers) != 2 {
		t.Errorf("retry after the firewall failure: %v, %d calls", err, len(fw))
	}
	p.AfterApply = nil
	// An apply that fails is reported; what was applied before is kept.
	rec.fail = errors.New("ip link add: Operation not supported")
	hub.answer(planeIfcs("master", "w-2"))
	if err := p.Once(ctx, keys); err == nil {
		t.Error("a failed apply was not reported")
	}
	if ifcs, _, err := p.Report(); err == nil || len(ifcs[0].Peers) != 2 {
		t.Errorf("after a failed apply: %+v %v", ifcs, err)
	}
	// The hub away: the error is reported, the planes stay.
	s.Stop()
	if err := p.Once(ctx, keys); err == nil || !strings.Contains(err.Error(), "join the planes") {
		t.Errorf("hub away: %v", err)
	}
	if ifcs, _, _ := p.Report(); len(ifcs) != 3 {
		t.Errorf("the planes were dropped when the hub went away: %+v", ifcs)
	}
}

// fixedPlanes is a PlaneReporter with a fixed answer.
type fixedPlanes struct {
	ifcs   []wg.Interface
	joined time.Time
	err    error
}

func (f fixedPlanes) Report() ([]wg.Interface, time.Time, error) { return f.ifcs, f.joined, f.err }

func TestNodeAPIPlanes(t *testing.T) {
	up := func(ifc wg.Interface) wg.Status {
		st := wg.Status{Plane: string(ifc.Plane), Interface: ifc.Name, Up: true, Addresses: []string{ifc.Address}, Peers: []wg.PeerStatus{}}
		for _, p := range ifc.Peers {
			st.Peers = append(st.Peers, wg.PeerStatus{Name: p.Name, PublicKey: p.PublicKey, LatestHandshake: time.Unix(1e9, 0)})
		}
		return st
	}
	cases := []struct {
		name    string
		planes  PlaneReporter
		read    func(wg.Interface) wg.Status
		healthy bool
		detail  string
	}{
		{"joined and up", fixedPlanes{ifcs: planeIfcs("master"), joined: time.Now()}, up, true, "3 plane(s) up with 3 peer(s)"},
		{"not joined yet", fixedPlanes{}, up, false, "not joined yet"},
		{"the hub refused", fixedPlanes{err: errors.New("join the planes at hub h: PermissionDenied")}, up, false, "PermissionDenied"},
		{"an interface down", fixedPlanes{ifcs: planeIfcs(), joined: time.Now()},
			func(ifc wg.Interface) wg.Status { st := up(ifc); st.Up = ifc.Name != "wg-obs"; return st }, false, "wg-obs is down"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newNodeEnv(t, func(cfg *NodeAPIConfig) { cfg.Planes, cfg.ReadPlane = c.planes, c.read })
			cl := e.as("rita", pki.RoleReader)
			h, err := cl.Health(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, chk := range h.Checks {
				if chk.Name != "planes" {
					continue
				}
				found = true
				if chk.OK != c.healthy || chk.Critical || !strings.Contains(chk.Detail, c.detail) {
					t.Errorf("planes check %+v, want ok=%v with %q, not critical", chk, c.healthy, c.detail)
				}
			}
			if !found {
				t.Error("no planes check")
			}
			got, err := cl.Planes(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ifcs, _, _ := c.planes.Report()
			if len(got.Interfaces) != len(ifcs) {
				t.Errorf("%d interfaces reported, want %d", len(got.Interfaces), len(ifcs))
			}
			if c.healthy && (got.Interfaces[0].Peers[0].Name != "master" || got.Joined.IsZero()) {
				t.Errorf("planes %+v", got)
			}
		})
	}
	// A node with no planes at all says so.
	e := newNodeEnv(t)
	if _, err := e.as("rita", pki.RoleReader).Planes(context.Background()); status.Code(err) != codes.NotFound {
		t.Errorf("no planes: %v, want NotFound", err)
	}
}

// Plane keys are managed: not drift when sound, drift when loosened or
// garbled.
func TestPlaneKeyDrift(t *testing.T) {
	dir := filepath.Join(t.TempDir(), PlanesDir)
	if items := planeKeyDrift(dir); len(items) != 0 {
		t.Errorf("no keys yet: %+v", items)
	}
	if _, err := wg.LoadOrCreateKeys(dir); err != nil {
		t.Fatal(err)
	}
	if items := planeKeyDrift(dir); len(items) != 0 {
		t.Errorf("fresh keys: %+v", items)
	}
	if err := os.Chmod(filepath.Join(dir, "control.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kubernetes.key"), []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	items := planeKeyDrift(dir)
	if len(items) != 2 || items[0].Kind != DriftModified || items[0].Actual != "mode 0644" || items[1].Kind != DriftInvalid ||
		!strings.HasSuffix(items[1].Path, "kubernetes.key") {
		t.Errorf("drift %+v", items)
	}
}

func TestBaseline(t *testing.T) {
	cases := []struct {
		name     string
		role     string
		ifcs     []wg.Interface
		planes   string
		udp, tcp string
	}{
		{"worker before joining", "worker", nil, "wg-control wg-obs wg-kubernetes", "[51820 51821 51822]", "[7444 7445]"},
		{"the master serves the hub", "master", nil, "wg-control wg-obs wg-kubernetes", "[51820 51821 51822]", "[7444 7445 7443 8443]"},
		{"the dashboards on the prometheus node", "prometheus", nil, "wg-control wg-obs wg-kubernetes", "[51820 51821 51822]", "[7444 7445 7447]"},
		{"and on the grafana node", "grafana", nil, "wg-control wg-obs wg-kubernetes", "[51820 51821 51822]", "[7444 7445 7447]"},
		{"ports from the hub's answer", "worker", []wg.Interface{{Name: "wg-control", ListenPort: 41000}}, "wg-control", "[41000]", "[7444 7445]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := Baseline(c.role, c.ifcs)
			if got := strings.Join(b.Planes, " "); got != c.planes {
				t.Errorf("planes %s, want %s", got, c.planes)
			}
			if got := fmt.Sprint(b.WireGuardPorts); got != c.udp {
				t.Errorf("udp %s, want %s", got, c.udp)
			}
			if got := fmt.Sprint(b.TCPPorts); got != c.tcp {
				t.Errorf("tcp %s, want %s", got, c.tcp)
			}
			if _, err := b.Ruleset(); err != nil {
				t.Errorf("ruleset: %v", err)
			}
		})
	}
}

// TestPlanesRun: the planes controller joins at once and again every
// period (fake clock), so a peer the hub adds later is applied within one
// period; it stops when ctx ends.
func TestPlanesRun(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	hub := &fakePlanesHub{ifcs: planeIfcs()}
	addr, _ := serveFakeHub(t, ca, func(s *grpc.Server) { api.RegisterPlanes(s, hub) })
	state := t.TempDir()
	idDir := filepath.Join(state, "identity")
	writeNodeIdentity(t, ca, idDir, "w-1")
	rec := &recordingApplier{}
	p := NewPlanes(EnrollConfig{Hub: addr, CA: ca.Certificate(), Name: "w-1", StateDir: idDir}, filepath.Join(state, PlanesDir), rec.apply, t.Logf)
	clock := newFakeClock()
	p.Clock = clock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, 10*time.Second) }()

	clock.awaitWaiters(t, 1)
	rec.mu.Lock()
	first := len(rec.applied)
	rec.mu.Unlock()
	if first != 3 {
		t.Fatalf("applied %d interfaces at start, want 3", first)
	}
	hub.answer(planeIfcs("master"))
	clock.Advance(10 * time.Second)
	clock.awaitWaiters(t, 1)
	rec.mu.Lock()
	again := len(rec.applied)
	rec.mu.Unlock()
	if again != 6 {
		t.Errorf("applied %d interfaces after one period, want 6 (the new peer)", again)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
