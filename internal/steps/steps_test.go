package steps_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
	"github.com/kubedos/kubedos/internal/steps/stepstest"
	"github.com/kubedos/kubedos/internal/wg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// env serves the local example's three nodes and returns API clients that
// reach them over mutual TLS, as the cluster library does.
func env(t *testing.T) (*spec.ClusterSpec, *stepstest.Env, *api.AdminClient, map[string]*api.NodeClient) {
	t.Helper()
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	e := stepstest.Serve(t, s, "b-1")
	dial := func(addr, name string) *grpc.ClientConn {
		conf := e.ClientTLS()
		conf.ServerName = name
		cc, err := grpc.NewClient(addr, append(api.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	nodes := map[string]*api.NodeClient{}
	for name, addr := range e.NodeAddrs {
		nodes[name] = api.NewNodeClient(dial(addr, name))
	}
	return s, e, api.NewAdminClient(dial(e.HubAddr, stepstest.HubServerName)), nodes
}

func node(s *spec.ClusterSpec, name string) spec.Node {
	for _, n := range s.Topology.Nodes {
		if n.Name == name {
			return n
		}
	}
	panic(name)
}

func TestAttestGate(t *testing.T) {
	s, e, hub, _ := env(t)
	tests := []struct {
		name      string
		hubSays   *api.Node
		build     string
		converged bool
		diff      string
		err       string
	}{
		{name: "enrolled on the build", build: "b-1", converged: true},
		{name: "build not checked", converged: true},
		{name: "another build", build: "b-2", diff: "w-1 runs build b-1, the cluster's build is b-2"},
		{name: "quarantined", hubSays: &api.Node{Name: "w-1", Role: "worker", State: "quarantined",
			Reason: &api.Refusal{Check: "pcr", Detail: "PCR 7: expected 1f…, got 9a…"}},
			diff: "w-1 is quarantined, not enrolled (pcr: PCR 7: expected 1f…, got 9a…)"},
		{name: "wrong role", hubSays: &api.Node{Name: "w-1", Role: "master", State: "enrolled"}, diff: "w-1 enrolled as master, the spec says worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.Hub.SetNode(api.Node{Name: "w-1", Role: "worker", State: "enrolled", BuildID: "b-1"})
			if tt.hubSays != nil {
				e.Hub.SetNode(*tt.hubSays)
			}
			st, err := steps.AttestGate(hub, node(s, "w-1"), tt.build).Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Converged != tt.converged || st.Diff != tt.diff {
				t.Errorf("got converged=%v diff %q, want %v %q", st.Converged, st.Diff, tt.converged, tt.diff)
			}
		})
	}
	unknown := spec.Node{Name: "w-9", Role: spec.RoleWorker}
	if _, err := steps.AttestGate(hub, unknown, "").Check(context.Background()); err == nil || !strings.Contains(err.Error(), "w-9") {
		t.Errorf("unknown node: err = %v, want one naming w-9", err)
	}
}

func TestPlane(t *testing.T) {
	_, e, _, nodes := env(t)
	up := func(p spec.Plane) wg.Status {
		return wg.Status{Plane: string(p), Interface: "wg-" + string(p), Up: true}
	}
	tests := []struct {
		name   string
		planes api.Planes
		diff   string
	}{
		{"all up", api.Planes{Joined: time.Now(), Interfaces: []wg.Status{up("control"), up("observability"), up("kubernetes")}}, ""},
		{"never joined", api.Planes{Error: "hub unreachable"}, "w-1 has not joined the planes: hub unreachable"},
		{"plane missing", api.Planes{Joined: time.Now(), Interfaces: []wg.Status{up("observability")}}, "w-1 reports no control plane"},
		{"down", api.Planes{Joined: time.Now(), Interfaces: []wg.Status{{Plane: "control", Interface: "wg-control"}}}, "w-1: wg-control (control) is down"},
		{"interface error", api.Planes{Joined: time.Now(), Interfaces: []wg.Status{{Plane: "control", Interface: "wg-control", Error: "no such device"}}},
			"w-1: wg-control (control): no such device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.Nodes["w-1"].SetPlanes(tt.planes)
			st, err := steps.Plane(steps.NamedNode{Name: "w-1", API: nodes["w-1"]}, spec.PlaneControl, "backplane/control/w-1").Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Converged != (tt.diff == "") || st.Diff != tt.diff {
				t.Errorf("got converged=%v diff %q, want diff %q", st.Converged, st.Diff, tt.diff)
			}
		})
	}
}

// TestNodeConfig: drift is the nodes' dry-run diff, Apply converges every
// node of the role, a second run changes nothing, and a node's refusal
// names the node.
func TestNodeConfig(t *testing.T) {
	_, e, _, nodes := env(t)
	rc := spec.RoleNodeConfig{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}
	named := []steps.NamedNode{{Name: "w-1", API: nodes["w-1"]}, {Name: "w-2", API: nodes["w-2"]}}
	g := converge.New()
	if err := g.Add(steps.NodeConfig(spec.RoleWorker, rc, named)); err != nil {
		t.Fatal(err)
	}
	rec, err := g.Converge(context.Background(), converge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := rec.Steps[0]
	if st.ID != "converge/worker" || st.Outcome != converge.Changed || !strings.Contains(st.Diff, "node w-1:") || !strings.Contains(st.Diff, "node w-2:") {
		t.Errorf("first run: %+v", st)
	}
	for _, n := range []string{"w-1", "w-2"} {
		if got := e.Nodes[n].Stored(); !strings.Contains(got, `"net.ipv4.ip_forward": "1"`) {
			t.Errorf("%s holds %q", n, got)
		}
	}
	if rec, err = g.Converge(context.Background(), converge.Options{}); err != nil || rec.Steps[0].Outcome != converge.Unchanged {
		t.Errorf("second run: %v %+v", err, rec.Steps[0])
	}
	if e.Nodes["w-1"].Applies != 1 {
		t.Errorf("w-1 applied %d times, want 1", e.Nodes["w-1"].Applies)
	}
	e.Nodes["w-2"].Refuse = "sysctls.kernel.modprobe: refused by the node's policy"
	_, err = steps.NodeConfig(spec.RoleWorker, rc, named).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "node w-2") || !strings.Contains(err.Error(), "refused by the node's policy") {
		t.Errorf("refusal: err = %v, want it to name w-2 and the policy", err)
	}
}
