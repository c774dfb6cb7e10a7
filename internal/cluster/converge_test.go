package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps/stepstest"
)

// localSpec is the local example (a master, two workers) with node
// configuration for the workers.
func convergeSpec(t testing.TB) *spec.ClusterSpec {
	t.Helper()
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	s.NodeConfig = map[spec.Role]spec.RoleNodeConfig{spec.RoleWorker: {Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}}
	return s
}

func config(s *spec.ClusterSpec, e *stepstest.Env, events func(converge.Event)) ConvergeConfig {
	return ConvergeConfig{Spec: s, HubAddr: e.HubAddr, ClientTLS: e.ClientTLS(), Builds: map[string]string{"master": "b-1", "worker": "b-1"}, NodeAddrs: e.NodeAddrs, Events: events}
}

func counts(rec *converge.Record) map[converge.Outcome][]string {
	out := map[converge.Outcome][]string{}
	for _, s := range rec.Steps {
		out[s.Outcome] = append(out[s.Outcome], s.ID)
	}
	return out
}

// TestConvergeTwice: the first run applies the workers' configuration,
// the second changes nothing; both are recorded at the hub and streamed.
func TestConvergeTwice(t *testing.T) {
	s := convergeSpec(t)
	e := stepstest.Serve(t, s, "b-1")
	var events []converge.Event
	res, err := Converge(context.Background(), config(s, e, func(ev converge.Event) { events = append(events, ev) }))
	if err != nil {
		t.Fatal(err)
	}
	// 4 gates, 12 plane steps, 1 node configuration.
	if got := counts(res.Record); len(res.Record.Steps) != 17 || strings.Join(got[converge.Changed], ",") != "converge/worker" || len(got[converge.Unchanged]) != 16 {
		t.Errorf("first run: %v", got)
	}
	if res.Seq != 1 || res.RecordErr != nil {
		t.Errorf("recorded as %d (%v), want 1", res.Seq, res.RecordErr)
	}
	if len(events) != 2+2*17 || events[0].Kind != converge.RunStarted || events[len(events)-1].Kind != converge.RunFinished {
		t.Errorf("%d events, first %s, last %s", len(events), events[0].Kind, events[len(events)-1].Kind)
	}

	res, err = Converge(context.Background(), config(s, e, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Record.Counts; c != (converge.Counts{Unchanged: 17}) {
		t.Errorf("second run: %+v, want all 17 unchanged", c)
	}
	runs := e.Hub.Runs()
	if len(runs) != 2 || runs[0].Counts.Changed != 1 || runs[1].Outcome != "converged" || runs[1].Cluster != "local" {
		t.Fatalf("hub kept %+v", runs)
	}
	if st := runs[0].Steps[len(runs[0].Steps)-1]; st.ID != "converge/worker" || !strings.Contains(st.Diff, "net.ipv4.ip_forward") {
		t.Errorf("recorded step %+v, want the workers' diff", st)
	}
	last, err := LastRun(context.Background(), e.HubAddr, e.ClientTLS())
	if err != nil || last == nil || last.Seq != 2 {
		t.Errorf("last run: %v %+v", err, last)
	}
}

// TestConvergeGateFails: a quarantined worker fails its gate with the
// hub's reason; its planes and its role's configuration are skipped, the
// rest converges, and the failed run is recorded.
func TestConvergeGateFails(t *testing.T) {
	s := convergeSpec(t)
	e := stepstest.Serve(t, s, "b-1")
	e.Hub.SetNode(api.Node{Name: "w-2", Role: "worker", State: "quarantined", Reason: &api.Refusal{Check: "pcr", Detail: "PCR 11 differs"}})
	cfg := config(s, e, nil)
	cfg.Engine.Retries = -1 // no retries: the gate will not change in this test
	res, err := Converge(context.Background(), cfg)
	if !errors.Is(err, converge.ErrStepsFailed) {
		t.Fatalf("err = %v, want ErrStepsFailed", err)
	}
	got := counts(res.Record)
	if strings.Join(got[converge.OutcomeFailed], ",") != "attest/w-2" || len(got[converge.OutcomeSkipped]) != 4 || len(got[converge.Unchanged]) != 12 {
		t.Errorf("outcomes %v", got)
	}
	for _, st := range res.Record.Steps {
		if st.ID == "attest/w-2" && !strings.Contains(st.Error, "w-2 is quarantined, not enrolled (pcr: PCR 11 differs)") {
			t.Errorf("gate error %q", st.Error)
		}
	}
	if runs := e.Hub.Runs(); len(runs) != 1 || runs[0].Outcome != "failed" {
		t.Errorf("hub kept %+v", runs)
	}
	if e.Nodes["w-1"].Stored() != "" {
		t.Error("w-1 was configured although its role's step depends on w-2's planes")
	}
}

// A node reports the ID of its role's image, not the build's: the gate
// compares each node with its own role's ID in the manifest (a run after
// cluster up failed every gate when it compared the build-id).
func TestConvergeGateRoleBuilds(t *testing.T) {
	s := convergeSpec(t)
	e := stepstest.Serve(t, s, "b-1")
	m := &manifest.Manifest{BuildID: "build-5462", Roles: map[string]manifest.RoleManifest{
		"master": {RoleID: "id-master"}, "worker": {RoleID: "id-worker"}}}
	for _, n := range s.Topology.Nodes {
		e.Hub.SetNode(api.Node{Name: n.Name, Role: string(n.Role), State: "enrolled", BuildID: "id-" + string(n.Role)})
	}
	cfg := config(s, e, nil)
	cfg.Builds = RoleBuilds(m)
	cfg.Engine.Retries = -1
	if _, err := Converge(context.Background(), cfg); err != nil {
		t.Fatalf("every node on its role's image: %v", err)
	}
	// A worker on the master's image fails its gate, naming both.
	e.Hub.SetNode(api.Node{Name: "w-1", Role: "worker", State: "enrolled", BuildID: "id-master"})
	res, err := Converge(context.Background(), cfg)
	if !errors.Is(err, converge.ErrStepsFailed) {
		t.Fatalf("err = %v, want ErrStepsFailed", err)
	}
	for _, st := range res.Record.Steps {
		if st.ID == "attest/w-1" && !strings.Contains(st.Error, "w-1 runs build id-master, the cluster's build is id-worker") {
			t.Errorf("gate error %q", st.Error)
		}
	}
}

// BenchmarkConvergeNoOp measures a run with nothing to change on a 3-node
// fake cluster over mutual TLS on loopback (issue 13: ≤ 2 s).
func BenchmarkConvergeNoOp(b *testing.B) {
	s := convergeSpec(b)
	e := stepstest.Serve(b, s, "b-1")
	cfg := ConvergeConfig{Spec: s, HubAddr: e.HubAddr, ClientTLS: e.ClientTLS(), Builds: map[string]string{"master": "b-1", "worker": "b-1"}, NodeAddrs: e.NodeAddrs}
	if _, err := Converge(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := Converge(context.Background(), cfg)
		if err != nil || res.Record.Counts.Changed != 0 {
			b.Fatalf("%v %+v", err, res.Record.Counts)
		}
	}
}

// cluster up's convergence waits longer the more API servers start one
// after the other.
func TestUpRetries(t *testing.T) {
	for name, c := range map[string]struct {
		src  []byte
		want int
	}{
		"no kubernetes":        {examples.Local, 96},
		"one control plane":    {examples.LocalK8s, 96},
		"three control planes": {examples.LocalHA, 3 * 96},
	} {
		s, err := spec.LoadBytes(c.src)
		if err != nil {
			t.Fatal(err)
		}
		if got := upRetries(s); got != c.want {
			t.Errorf("%s: %d retries, want %d", name, got, c.want)
		}
	}
}
