package steps_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/steps"
)

// fakeKube is an API server as far as the steps look: objects by path.
type fakeKube struct {
	mu        sync.Mutex
	ready     bool
	objects   map[string]bool
	nodes     []kube.Node
	available int
	applied   int
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
	if strings.HasSuffix(path, "/deployments/probe") && f.objects[path] {
		return json.Unmarshal([]byte(fmt.Sprintf(`{"status":{"availableReplicas":%d}}`, f.available)), out)
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

func kubeGraph(t *testing.T, k steps.Kube) *converge.Graph {
	t.Helper()
	g := converge.New()
	for _, s := range []converge.Step{steps.KubeAPI(k), steps.KubeAddons(k, kubeplan.Addons(), steps.KubeAPIID),
		steps.KubeNodes(k, []string{"w-1"}, steps.KubeAPIID), steps.KubeProbe(k, steps.KubeAddonsID, steps.KubeNodesID)} {
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
	k := &fakeKube{objects: map[string]bool{}}
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
	if got[steps.KubeAddonsID] != "changed" || k.applied != len(kubeplan.Addons()) {
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

	// Ready, but the probe has one replica of two.
	k.nodes[0].Ready, k.available = true, 1
	rec, _ = g.Converge(ctx, opt)
	if got = outcomes(rec); !strings.Contains(got["workload/kubernetes"], "probe: 1 of 2 replicas available") {
		t.Errorf("probe: %s", got["workload/kubernetes"])
	}

	// Served: every step unchanged, nothing applied again.
	k.available = 2
	applied := k.applied
	rec, err = g.Converge(ctx, opt)
	if err != nil || rec.Counts.Unchanged != 4 || k.applied != applied {
		t.Errorf("converged cluster: %v, %+v, %d applied again", err, rec.Counts, k.applied-applied)
	}
}
