package steps_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
)

// fakeKube is an API server as far as the steps look: objects by path.
type fakeKube struct {
	mu        sync.Mutex
	ready     bool
	objects   map[string]bool
	nodes     []kube.Node
	available int // of each deployment
	dns       int // of CoreDNS's, when it differs
	applied   int
	endpoints []string // of default/kubernetes
}

func (f *fakeKube) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready {
		return errors.New("etcd not reachable")
	}
	return nil
}

func (f *fakeKube) Get(_ context.Context, path string, out any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if path == "/api/v1/namespaces/default/endpoints/kubernetes" {
		var addrs []string
		for _, ip := range f.endpoints {
			addrs = append(addrs, fmt.Sprintf(`{"ip":%q}`, ip))
		}
		return json.Unmarshal([]byte(`{"subsets":[{"addresses":[`+strings.Join(addrs, ",")+`]}]}`), out)
	}
	if strings.Contains(path, "/deployments/") && f.objects[path] {
		n := f.available
		if strings.HasSuffix(path, "/deployments/coredns") && f.dns >= 0 {
			n = f.dns
		}
		return json.Unmarshal([]byte(fmt.Sprintf(`{"status":{"availableReplicas":%d}}`, n)), out)
	}
	if !f.objects[path] {
		return fmt.Errorf("%w: %s", errdefs.ErrNotFound, path)
	}
	return nil
}

func (f *fakeKube) Apply(_ context.Context, obj []byte) error {
	path, err := kube.ObjectPath(obj)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[path] = true
	f.applied++
	return nil
}

func (f *fakeKube) Nodes(context.Context) ([]kube.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes, nil
}

func addons(t *testing.T) []kubeplan.Object {
	t.Helper()
	doc, err := spec.Parse(examples.LocalK8s)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubeplan.Addons(doc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kubeGraph(t *testing.T, k steps.Kube) *converge.Graph {
	t.Helper()
	g := converge.New()
	for _, s := range []converge.Step{steps.KubeAPI(k, nil), steps.KubeAddons(k, addons(t), steps.KubeAPIID),
		steps.KubeNodes(k, []string{"w-1"}, steps.KubeAPIID), steps.KubeDNS(k, steps.KubeAddonsID, steps.KubeNodesID),
		steps.KubeProbe(k, steps.KubeAddonsID, steps.KubeNodesID, steps.KubeDNSID)} {
		if err := g.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func outcomes(rec *converge.Record) map[string]string {
	out := map[string]string{}
	for _, s := range rec.Steps {
		out[s.ID] = string(s.Outcome)
		if s.Error != "" {
			out[s.ID] += ": " + s.Error
		}
	}
	return out
}

func TestKubernetesSteps(t *testing.T) {
	ctx := context.Background()
	k := &fakeKube{objects: map[string]bool{}, dns: -1}
	g := kubeGraph(t, k)
	opt := converge.Options{Retries: -1}

	// The API server not ready: nothing after it runs.
	rec, err := g.Converge(ctx, opt)
	if err == nil {
		t.Fatal("converged with the API server down")
	}
	got := outcomes(rec)
	if !strings.Contains(got[steps.KubeAPIID], "failed: drifted: kube-apiserver is not ready: etcd not reachable") ||
		!strings.HasPrefix(got[steps.KubeAddonsID], "skipped") {
		t.Fatalf("API down: %v", got)
	}

	// Ready, no kubelet yet: the objects are applied, the nodes gate names
	// the missing node, the probe waits.
	k.ready = true
	rec, _ = g.Converge(ctx, opt)
	got = outcomes(rec)
	if got[steps.KubeAddonsID] != "changed" || k.applied != len(addons(t)) {
		t.Errorf("addons: %s, %d applied", got[steps.KubeAddonsID], k.applied)
	}
	if !strings.Contains(got[steps.KubeNodesID], "w-1 is not registered") {
		t.Errorf("nodes: %s", got[steps.KubeNodesID])
	}
	k.nodes = []kube.Node{{Name: "w-1"}}
	rec, _ = g.Converge(ctx, opt)
	if got = outcomes(rec); !strings.Contains(got[steps.KubeNodesID], "w-1 is not Ready") {
		t.Errorf("nodes: %s", got[steps.KubeNodesID])
	}

	// Ready, CoreDNS has no replica available: the probe waits for it,
	// and the step names what it waits for.
	k.nodes[0].Ready, k.available, k.dns = true, 2, 0
	rec, _ = g.Converge(ctx, opt)
	if got = outcomes(rec); !strings.Contains(got[steps.KubeDNSID], "coredns: 0 of 2 replicas available") ||
		!strings.HasPrefix(got["workload/kubernetes"], "skipped") {
		t.Errorf("dns: %s; probe: %s", got[steps.KubeDNSID], got["workload/kubernetes"])
	}

	// Ready, but the probe has one replica of two.
	k.available, k.dns = 1, 2
	rec, _ = g.Converge(ctx, opt)
	if got = outcomes(rec); !strings.Contains(got["workload/kubernetes"], "probe: 1 of 2 replicas available") {
		t.Errorf("probe: %s", got["workload/kubernetes"])
	}

	// Served: every step unchanged, nothing applied again.
	k.available = 2
	applied := k.applied
	rec, err = g.Converge(ctx, opt)
	if err != nil || rec.Counts.Unchanged != 5 || k.applied != applied {
		t.Errorf("converged cluster: %v, %+v, %d applied again", err, rec.Counts, k.applied-applied)
	}
}

// On a cluster of several API servers the API gate waits for every one to
// be among the kubernetes Service's endpoints, not only for the one the
// VIP reached.
func TestKubeAPIEveryServer(t *testing.T) {
	ctx := context.Background()
	k := &fakeKube{objects: map[string]bool{}, ready: true, endpoints: []string{"10.59.0.11"}}
	servers := []steps.APIServer{{Node: "cp-1", Address: "10.59.0.11"}, {Node: "cp-2", Address: "10.59.0.12"}, {Node: "cp-3", Address: "10.59.0.13"}}
	step := steps.KubeAPI(k, servers)
	st, err := step.Check(ctx)
	if err != nil || st.Converged || st.Diff != "API servers not serving yet: cp-2 (10.59.0.12), cp-3 (10.59.0.13)" {
		t.Errorf("one of three serving: %+v, %v", st, err)
	}
	k.endpoints = []string{"10.59.0.13", "10.59.0.11", "10.59.0.12"}
	if st, err := step.Check(ctx); err != nil || !st.Converged {
		t.Errorf("all three serving: %+v, %v", st, err)
	}
	k.ready = false
	if st, err := step.Check(ctx); err != nil || st.Converged || !strings.Contains(st.Diff, "not ready") {
		t.Errorf("the API not ready: %+v, %v", st, err)
	}
	// One API server: /readyz through its address is the whole answer.
	k.ready, k.endpoints = true, nil
	if st, err := steps.KubeAPI(k, servers[:1]).Check(ctx); err != nil || !st.Converged {
		t.Errorf("a single API server: %+v, %v", st, err)
	}
}
