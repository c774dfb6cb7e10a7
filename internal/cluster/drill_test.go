package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// drillKube is the API server as the drill sees it: the node appears
// after readyAfter asks, the probe's replicas after probeAfter.
type drillKube struct {
	node                  string
	readyAfter, probeAft  int
	nodeCalls, probeCalls int
	dnsAfter, dnsCalls    int // CoreDNS's replicas after dnsAfter asks
	epAfter, epCalls      int // cp-2's API server an endpoint after epAfter asks
}

func (k *drillKube) Nodes(context.Context) ([]kube.Node, error) {
	k.nodeCalls++
	if k.nodeCalls <= k.readyAfter {
		return nil, nil
	}
	return []kube.Node{{Name: k.node, Ready: true, KubeletVersion: "v1.35.4"}}, nil
}

func (k *drillKube) Get(_ context.Context, path string, out any) error {
	if strings.HasSuffix(path, "/endpoints/kubernetes") {
		k.epCalls++
		ips := `{"ip":"10.59.0.11"},{"ip":"10.59.0.13"}`
		if k.epCalls > k.epAfter {
			ips += `,{"ip":"10.59.0.12"}`
		}
		return json.Unmarshal([]byte(`{"subsets":[{"addresses":[`+ips+`]}]}`), out)
	}
	n := 0
	if strings.HasSuffix(path, "/deployments/coredns") {
		k.dnsCalls++
		if k.dnsCalls > k.dnsAfter {
			n = kubeplan.CoreDNSReplicas
		}
		return json.Unmarshal(fmt.Appendf(nil, `{"status":{"availableReplicas":%d}}`, n), out)
	}
	k.probeCalls++
	if k.probeCalls > k.probeAft {
		n = kubeplan.ProbeReplicas
	}
	return json.Unmarshal(fmt.Appendf(nil, `{"status":{"availableReplicas":%d}}`, n), out)
}

// recordingOps are drill steps that record their order; fail names a step
// that fails, newEK is what the recreated machine enrolls with.
func recordingOps(fail, newEK string, k *drillKube) (drillOps, *[]string) {
	var did []string
	step := func(name string) error {
		did = append(did, name)
		if name == fail {
			return errors.New(name + " refused")
		}
		return nil
	}
	ops := drillOps{
		fence:    func(context.Context) (string, error) { return "hub: fenced, VM stopped", step(DrillFence) },
		replace:  func(context.Context) (string, error) { return "hub: replaced", step(DrillReplace) },
		destroy:  func(context.Context) error { return step(DrillDestroy) },
		recreate: func(context.Context) error { return step(DrillRecreate) },
		enrolled: func(context.Context) (string, error) { return newEK, step(DrillEnroll) },
		poll:     time.Millisecond,
	}
	if k != nil {
		ops.kube = k
	}
	return ops, &did
}

func TestDrillSteps(t *testing.T) {
	all := []string{DrillFence, DrillReplace, DrillDestroy, DrillRecreate, DrillEnroll}
	for _, tc := range []struct {
		name, fail, newEK string
		kube              bool
		wantDone          []string
		wantSteps         int
		wantErr           string
	}{
		{name: "all, with Kubernetes", newEK: "ek-new", kube: true, wantDone: all, wantSteps: 7},
		{name: "no Kubernetes", newEK: "ek-new", wantDone: all, wantSteps: 5},
		{name: "fence refused stops there", fail: DrillFence, newEK: "ek-new", kube: true, wantDone: all[:1], wantSteps: 1, wantErr: "fence refused"},
		{name: "recreate fails", fail: DrillRecreate, newEK: "ek-new", kube: true, wantDone: all[:4], wantSteps: 4, wantErr: "recreate refused"},
		// The old machine (or its TPM) back under the name is no replacement.
		{name: "same EK", newEK: "ek-old", kube: true, wantDone: all, wantSteps: 5, wantErr: "not a fresh TPM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k *drillKube
			if tc.kube {
				k = &drillKube{node: "w-1", readyAfter: 2, probeAft: 3, dnsAfter: 1}
			}
			ops, did := recordingOps(tc.fail, tc.newEK, k)
			var seen []string
			r := ops.run(context.Background(), "w-1", "ek-old", time.Minute, func(s DrillStep) { seen = append(seen, s.Step) })
			if !slices.Equal(*did, tc.wantDone) {
				t.Errorf("steps taken %v, want %v", *did, tc.wantDone)
			}
			if len(r.Steps) != tc.wantSteps || len(seen) != tc.wantSteps {
				t.Fatalf("reported %d steps (%d events), want %d: %+v", len(r.Steps), len(seen), tc.wantSteps, r.Steps)
			}
			last := r.Steps[len(r.Steps)-1]
			if tc.wantErr != "" {
				if last.OK || !strings.Contains(last.Detail, tc.wantErr) || !strings.Contains(r.Summary(), "FAILED") {
					t.Errorf("last step %+v, want failed with %q; summary %q", last, tc.wantErr, r.Summary())
				}
				return
			}
			if !last.OK || r.NewEK != "ek-new" || !strings.Contains(r.Summary(), "ek-old") {
				t.Errorf("report %+v; summary %q", r, r.Summary())
			}
			// The probe is asked until available (4), then CoreDNS until
			// available (2), the probe again meanwhile (5).
			if tc.kube && (k.nodeCalls != 3 || k.probeCalls != 5 || k.dnsCalls != 2) {
				t.Errorf("the Kubernetes waits asked %d, %d and %d times, want 3, 5 and 2 (until Ready, until available)",
					k.nodeCalls, k.probeCalls, k.dnsCalls)
			}
		})
	}
}

// TestDrillWaitBounded: a kubelet that never comes back fails the step
// when the wait's bound passes, saying what it last saw.
func TestDrillWaitBounded(t *testing.T) {
	ops, _ := recordingOps("", "ek-new", &drillKube{node: "w-1", readyAfter: 1 << 30})
	r := ops.run(context.Background(), "w-1", "ek-old", 30*time.Millisecond, nil)
	last := r.Steps[len(r.Steps)-1]
	if last.Step != DrillKubelet || last.OK || !strings.Contains(last.Detail, "not registered with the API server") {
		t.Errorf("last step %+v", last)
	}
}

// A control plane of an HA cluster is drilled to its etcd member healthy
// and its API server serving again (no kubelet: it runs none), then the
// probe; a member that never rejoins fails the drill there.
func TestDrillControlPlane(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rejoins bool
		want    []string
	}{
		{"rejoins", true, []string{DrillFence, DrillReplace, DrillDestroy, DrillRecreate, DrillEnroll, DrillEtcd, DrillAPI, DrillProbe}},
		{"never rejoins", false, []string{DrillFence, DrillReplace, DrillDestroy, DrillRecreate, DrillEnroll, DrillEtcd}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &drillKube{node: "cp-2", epAfter: 2}
			ops, _ := recordingOps("", "ek-new", k)
			asks := 0
			ops.etcd = func(context.Context) (bool, string, error) {
				asks++
				if tc.rejoins && asks > 2 {
					return true, "has a leader", nil
				}
				return false, "no etcd health check (not running etcd yet, or unreachable)", nil
			}
			ops.apiAddress, ops.noKubelet = "10.59.0.12", true
			r := ops.run(context.Background(), "cp-2", "ek-old", 300*time.Millisecond, nil)
			var got []string
			for _, s := range r.Steps {
				got = append(got, s.Step)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("steps %v, want %v", got, tc.want)
			}
			last := r.Steps[len(r.Steps)-1]
			if last.OK != tc.rejoins || (!tc.rejoins && !strings.Contains(last.Detail, "not running etcd yet")) {
				t.Errorf("last step %+v", last)
			}
			if k.nodeCalls != 0 {
				t.Error("asked for a kubelet a control plane does not run")
			}
		})
	}
}

func TestDrillNodeOK(t *testing.T) {
	s, err := spec.LoadBytes(examples.LocalK8s)
	if err != nil {
		t.Fatal(err)
	}
	ha, err := spec.LoadBytes(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	noVIP, _ := spec.LoadBytes(examples.LocalHA)
	noVIP.Topology.APIVIP = ""
	ref, err := spec.LoadBytes(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s          *spec.ClusterSpec
		node, want string
	}{
		{s, "w-1", ""},
		{s, "master", "a master keeps the hub"},
		{s, "cp-1", "one of 1 etcd member(s); without it there is no quorum"},
		{s, "nope", "no node nope"},
		// HA: three stacked members behind the VIP survive one drilled.
		{ha, "cp-2", ""},
		{ha, "w-1", ""},
		{ha, "master", "a master keeps the hub"},
		{noVIP, "cp-2", "the API would go with it"},
		// External etcd: members and control planes each drillable.
		{ref, "etcd-1", ""},
		{ref, "cp-3", ""},
		{ref, "lb-1", "it is a loadbalancer node"},
	} {
		err := DrillNodeOK(c.s, c.node)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s of %s: %v, want %q", c.node, c.s.Metadata.Name, err, c.want)
		}
	}
}

// TestAcceptDrill: the gate runs the drill first and reports it; a failed
// drill fails the gate naming the node; a node the drill may not replace
// is refused before anything runs.
func TestAcceptDrill(t *testing.T) {
	a := newAcceptEnv(t)
	ctx := context.Background()
	a.cfg.AllowUnchecked = nil
	var ran []string
	a.cfg.DrillNode = "w-1"
	a.cfg.Drill = func(_ context.Context, node string, kc *kube.Client) (*DrillReport, error) {
		ran = append(ran, node)
		// One admin credential for the gate and the drill (with its fence).
		if kc == nil || AcceptKube(kc) != a.cfg.Kube {
			t.Errorf("the drill got API server client %p, not the gate's %p", kc, a.cfg.Kube)
		}
		return &DrillReport{Node: node, OldEK: "ek-old", NewEK: "ek-w-1", Steps: []DrillStep{{Step: DrillEnroll, OK: true}}}, nil
	}
	res, err := Accept(ctx, a.cfg)
	if err != nil || !res.Accepted || !slices.Equal(ran, []string{"w-1"}) || res.Drill == nil {
		t.Fatalf("accept with a passing drill: %v; ran %v; failing %v", err, ran, failing(res))
	}
	if c := res.Checks[0]; c.Name != UncheckedDrill || c.Node != "w-1" || c.Outcome != CheckPassed || !strings.Contains(c.Detail, "enroll") {
		t.Errorf("first check %+v, want the drill passed on w-1", c)
	}

	a.cfg.Drill = func(_ context.Context, node string, _ *kube.Client) (*DrillReport, error) {
		r := &DrillReport{Node: node, Steps: []DrillStep{{Step: DrillFence, OK: true}, {Step: DrillEnroll, Detail: "w-1 is quarantined: pcr-policy"}}}
		return r, errors.New("replacement drill of w-1: enroll: w-1 is quarantined")
	}
	res, err = Accept(ctx, a.cfg)
	if !errors.Is(err, ErrNotAccepted) || !slices.Equal(failing(res), []string{"drill@w-1"}) || !strings.Contains(res.Checks[0].Detail, "pcr-policy") {
		t.Errorf("a failed drill: %v; failing %v; %+v", err, failing(res), res.Checks[0])
	}

	ran = nil
	a.cfg.DrillNode = "cp-1"
	if _, err := Accept(ctx, a.cfg); err == nil || !strings.Contains(err.Error(), "no quorum") || len(ran) != 0 {
		t.Errorf("drilling cp-1: %v (ran %v)", err, ran)
	}
}

// TestDrillResume: a drill cut off at recreate is resumed by the next run
// from recreate: fence, replace and destroy are not done again, the EK it
// compares with is the fenced machine's, kept in the record; a finished
// drill leaves no record.
func TestDrillResume(t *testing.T) {
	dir := t.TempDir()
	c := New(Config{Dir: dir})
	rec := c.drillRecord("w-1")
	prog := drillProgress{Node: "w-1", OldEK: "ek-old", Started: time.Now().UTC()}
	keep := func(done []string) error { p := prog; p.Done = done; return rec.save(p) }

	ops, _ := recordingOps(DrillRecreate, "ek-new", nil)
	ops.progress = keep
	if r := ops.run(context.Background(), "w-1", "ek-old", time.Minute, nil); r.Steps[len(r.Steps)-1].OK {
		t.Fatal("the failing recreate passed")
	}
	got, ok, err := rec.load("w-1")
	if err != nil || !ok || !slices.Equal(got.Done, []string{DrillFence, DrillReplace, DrillDestroy}) || got.OldEK != "ek-old" {
		t.Fatalf("kept after the failure: %+v, %v, %v", got, ok, err)
	}

	ops, did := recordingOps("", "ek-new", nil)
	ops.progress, ops.resumed = keep, got.Done
	var seen []string
	r := ops.run(context.Background(), "w-1", got.OldEK, time.Minute, func(s DrillStep) { seen = append(seen, s.Step) })
	if !slices.Equal(*did, []string{DrillRecreate, DrillEnroll}) {
		t.Errorf("resumed run did %v, want recreate and enroll only", *did)
	}
	if len(r.Steps) != 5 || !r.Steps[0].OK || !strings.Contains(r.Steps[0].Detail, "resumed") || len(seen) != 5 || r.NewEK != "ek-new" {
		t.Errorf("resumed report %+v", r)
	}
	if err := rec.clear(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := rec.load("w-1"); ok || err != nil {
		t.Errorf("after clear: %v, %v", ok, err)
	}
}

// A record that is not a drill's progress of this node is refused, naming
// the file: resuming from a guess could skip the fence.
func TestDrillRecordRefuses(t *testing.T) {
	c := New(Config{Dir: t.TempDir()})
	rec := c.drillRecord("w-1")
	for name, body := range map[string]string{
		"junk":         "not json",
		"unknown key":  `{"node":"w-1","oldEKHash":"e","started":"2026-01-01T00:00:00Z","done":[],"skip":true}`,
		"another node": `{"node":"w-2","oldEKHash":"e","started":"2026-01-01T00:00:00Z","done":["fence"]}`,
		"no EK":        `{"node":"w-1","oldEKHash":"","started":"2026-01-01T00:00:00Z","done":["fence"]}`,
		"unknown step": `{"node":"w-1","oldEKHash":"e","started":"2026-01-01T00:00:00Z","done":["fence","teleport"]}`,
	} {
		if err := os.MkdirAll(filepath.Dir(rec.path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(rec.path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := rec.load("w-1"); ok || err == nil || !strings.Contains(err.Error(), rec.path) {
			t.Errorf("%s: %v, %v; want refused naming %s", name, ok, err, rec.path)
		}
	}
}
