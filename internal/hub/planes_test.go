package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func planeKeys(t testing.TB) map[spec.Plane]string {
	t.Helper()
	out := map[spec.Plane]string{}
	for _, p := range spec.Planes {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		out[p] = k.PublicKey().String()
	}
	return out
}

func nodePeer(name, role string) pki.Peer {
	return pki.Peer{Name: name, Role: pki.RoleNode, NodeRole: role}
}

// peersOf is "name@allowed" of each peer on the control plane.
func peersOf(ifcs []wg.Interface) string {
	var out []string
	for _, p := range ifcs[0].Peers {
		out = append(out, p.Name+"@"+strings.Join(p.AllowedIPs, ","))
	}
	return strings.Join(out, " ")
}

// TestJoinPlanes: enrolled nodes join with their keys; the master peers
// with every node that joined, a worker with the master; a revoked node
// drops out; bad or borrowed keys and callers that are not enrolled nodes
// are refused; joining again with the same keys audits nothing.
func TestJoinPlanes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	e.spec = s
	e.newHub()
	m, w1, w2 := newNode(t, "master", "master"), newNode(t, "w-1", "worker"), newNode(t, "w-2", "worker")
	for _, n := range []*node{m, w1, w2} {
		e.register(n)
		e.mustEnroll(n)
	}
	km, k1, k2 := planeKeys(t), planeKeys(t), planeKeys(t)

	got, err := e.hub.JoinPlanes(ctx, nodePeer("master", "master"), km)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Address != "10.77.0.10/24" || len(got[0].Peers) != 0 {
		t.Fatalf("master alone: %+v", got)
	}
	if a := e.lastAudit(); a.Action != "planes.join" || a.Actor != "node:master" || !strings.Contains(a.Detail, "registered plane keys") {
		t.Errorf("audit of the first join: %+v", a)
	}
	got, err = e.hub.JoinPlanes(ctx, nodePeer("w-1", "worker"), k1)
	if err != nil {
		t.Fatal(err)
	}
	if p := peersOf(got); p != "master@10.77.0.0/24" || got[0].Peers[0].PublicKey != km[spec.PlaneControl] {
		t.Errorf("w-1's peers: %s", p)
	}
	if _, err := e.hub.JoinPlanes(ctx, nodePeer("w-2", "worker"), k2); err != nil {
		t.Fatal(err)
	}
	before := e.lastAudit()
	got, err = e.hub.JoinPlanes(ctx, nodePeer("master", "master"), km)
	if err != nil {
		t.Fatal(err)
	}
	if p := peersOf(got); p != "w-1@10.77.0.21/32 w-2@10.77.0.22/32" {
		t.Errorf("master's peers: %s", p)
	}
	if after := e.lastAudit(); after.Seq != before.Seq {
		t.Errorf("joining again with the same keys was audited: %+v", after)
	}

	// Revocation takes the node off the master's planes.
	if err := e.hub.Revoke(ctx, operator, "w-2", "test"); err != nil {
		t.Fatal(err)
	}
	got, err = e.hub.JoinPlanes(ctx, nodePeer("master", "master"), km)
	if err != nil {
		t.Fatal(err)
	}
	if p := peersOf(got); p != "w-1@10.77.0.21/32" {
		t.Errorf("master's peers after revoking w-2: %s", p)
	}
	if _, err := e.hub.JoinPlanes(ctx, nodePeer("w-2", "worker"), k2); !errors.Is(err, ErrState) {
		t.Errorf("revoked w-2 joined: %v", err)
	}

	bad := planeKeys(t)
	delete(bad, spec.PlaneObservability)
	if _, err := e.hub.JoinPlanes(ctx, nodePeer("w-1", "worker"), bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "planes.observability") {
		t.Errorf("a missing plane key: %v", err)
	}
	borrowed := planeKeys(t)
	borrowed[spec.PlaneControl] = km[spec.PlaneControl]
	if _, err := e.hub.JoinPlanes(ctx, nodePeer("w-1", "worker"), borrowed); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node master already holds") {
		t.Errorf("the master's key: %v", err)
	}
	if _, err := e.hub.JoinPlanes(ctx, operator, km); !errors.Is(err, ErrForbidden) {
		t.Errorf("an operator joined the planes: %v", err)
	}
	// A changed key (a wiped state partition) is taken and audited.
	k1b := planeKeys(t)
	if _, err := e.hub.JoinPlanes(ctx, nodePeer("w-1", "worker"), k1b); err != nil {
		t.Fatal(err)
	}
	if a := e.lastAudit(); !strings.Contains(a.Detail, "changed plane keys") {
		t.Errorf("audit of a changed key: %+v", a)
	}

	e.spec = nil
	e.newHub()
	if _, err := e.hub.JoinPlanes(ctx, nodePeer("w-1", "worker"), k1b); !errors.Is(err, ErrState) {
		t.Errorf("a hub without a spec: %v", err)
	}
}

// TestJoinPlanesGRPC: the node's name comes from its certificate, and a
// caller without one is refused.
func TestJoinPlanesGRPC(t *testing.T) {
	e := newEnv(t)
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	e.spec = s
	addr := serveTLS(t, e)
	ctx := context.Background()
	dial := func(cert *tls.Certificate) *api.PlanesClient { return api.NewPlanesClient(dialHub(t, e, addr, cert)) }
	if _, err := dial(nil).Join(ctx, &api.JoinPlanesRequest{Keys: planeKeys(t)}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no certificate: %v, want Unauthenticated", err)
	}
	w1 := newNode(t, "w-1", "worker")
	e.register(w1)
	c1 := e.mustEnroll(w1)
	node := dial(&tls.Certificate{Certificate: [][]byte{c1.Cert.Raw}, PrivateKey: w1.key, Leaf: c1.Cert})
	res, err := node.Join(ctx, &api.JoinPlanesRequest{Keys: planeKeys(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 3 || res.Interfaces[0].Address != "10.77.0.21/24" || res.Interfaces[2].Name != "wg-kubernetes" {
		t.Errorf("w-1's interfaces: %+v", res.Interfaces)
	}
	if _, err := node.Join(ctx, &api.JoinPlanesRequest{Keys: map[spec.Plane]string{}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no keys: %v, want InvalidArgument", err)
	}
}

// BenchmarkJoinPlanes is the hub's cost of the call every node makes every
// 10 s, at its dearest: the master of the 16-node reference platform
// re-joining with unchanged keys (a read of every node record and the
// rendering of 15 peers on each of three planes; nothing written).
func BenchmarkJoinPlanes(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	s, err := spec.LoadBytes(examples.Reference)
	if err != nil {
		b.Fatal(err)
	}
	e.spec, e.policy = s, fakePolicy{}
	for _, n := range s.Topology.Nodes {
		e.policy[n.Name] = string(n.Role)
	}
	e.newHub()
	var master pki.Peer
	var masterKeys map[spec.Plane]string
	for _, n := range s.Topology.Nodes {
		nd := newNode(b, n.Name, string(n.Role))
		e.register(nd)
		e.mustEnroll(nd)
		keys := planeKeys(b)
		p := nodePeer(n.Name, string(n.Role))
		if _, err := e.hub.JoinPlanes(ctx, p, keys); err != nil {
			b.Fatal(err)
		}
		if n.Role == spec.RoleMaster {
			master, masterKeys = p, keys
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ifcs, err := e.hub.JoinPlanes(ctx, master, masterKeys)
		if err != nil || len(ifcs[0].Peers) != len(s.Topology.Nodes)-1 {
			b.Fatalf("%v: %d peers", err, len(ifcs[0].Peers))
		}
	}
}
