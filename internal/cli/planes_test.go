package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/wg"
)

func (f *fakeNode) Planes(context.Context, *api.PlanesRequest) (*api.Planes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.planes != nil {
		return f.planes, nil
	}
	return &api.Planes{Joined: time.Now().Add(-4 * time.Second), Interfaces: []wg.Status{
		{Plane: "control", Interface: "wg-control", Up: true, Addresses: []string{"10.77.0.21/24"}, Port: 51820,
			Peers: []wg.PeerStatus{{Name: "master", PublicKey: strings.Repeat("k", 44), Endpoint: "10.20.0.10:51820",
				AllowedIPs: []string{"10.77.0.0/24"}, LatestHandshake: time.Now().Add(-7 * time.Second), RxBytes: 92, TxBytes: 180}}},
		{Plane: "observability", Interface: "wg-obs", Up: true, Addresses: []string{"10.78.0.21/24"}, Port: 51821, Peers: []wg.PeerStatus{}},
	}}, nil
}

func TestNodePlanes(t *testing.T) {
	keys, addr, node := nodeCLIEnv(t)
	flags := []string{"--node", addr, "--name", "w-1", "--keys", keys}
	code, out, errs := runNodeAPI(t, "", append([]string{"planes"}, flags...)...)
	if code != 0 {
		t.Fatalf("planes: exit %d %s", code, errs)
	}
	for _, want := range []string{"joined: 4s ago", "wg-control", "master", "10.20.0.10:51820", "7s ago", "92", "wg-obs"} {
		if !strings.Contains(out, want) {
			t.Errorf("planes output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runNodeAPI(t, "", append([]string{"planes", "-o", "json"}, flags...)...)
	var p api.Planes
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || len(p.Interfaces) != 2 || p.Interfaces[0].Peers[0].RxBytes != 92 {
		t.Errorf("planes -o json: exit %d %s", code, out)
	}
	// A failed join or an interface down exits 1, with the reason shown.
	node.mu.Lock()
	node.planes = &api.Planes{Error: "join the planes at hub 10.20.0.10:7443: PermissionDenied", Interfaces: []wg.Status{
		{Plane: "control", Interface: "wg-control", Addresses: []string{}, Peers: []wg.PeerStatus{}}}}
	node.mu.Unlock()
	code, out, _ = runNodeAPI(t, "", append([]string{"planes"}, flags...)...)
	if code != 1 || !strings.Contains(out, "joined: never") || !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, "(down)") {
		t.Errorf("planes of a node that failed to join: exit %d\n%s", code, out)
	}
}
