package cluster

import (
	"context"
	"slices"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
)

// idleKube is an API server nobody asks: the graph is only built.
type idleKube struct{}

func (idleKube) Ready(context.Context) error                { return nil }
func (idleKube) Get(context.Context, string, any) error     { return nil }
func (idleKube) Apply(context.Context, []byte) error        { return nil }
func (idleKube) Nodes(context.Context) ([]kube.Node, error) { return nil, nil }

// An HA spec's graph has the etcd membership steps after the API gate,
// the removal destructive under the opt-in the spec's
// destructive.removeEtcdMembers grants, and nothing else is.
func TestGraphEtcdSteps(t *testing.T) {
	doc, err := spec.Parse(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	s := spec.WithDefaults(doc.Spec)
	nodes := map[string]steps.Node{}
	for _, n := range s.Topology.Nodes {
		nodes[n.Name] = api.NewNodeClient(nil)
	}
	g, err := Graph(s, nil, nodes, nil, idleKube{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]int{}
	all := g.Steps()
	for i, st := range all {
		byID[st.ID] = i
	}
	for _, id := range []string{steps.EtcdRemovedID, steps.EtcdJoinedID} {
		i, ok := byID[id]
		if !ok {
			t.Fatalf("no step %s", id)
		}
		if !slices.Equal(all[i].Deps, []string{steps.KubeAPIID}) {
			t.Errorf("%s depends on %v", id, all[i].Deps)
		}
	}
	if d := all[byID[steps.EtcdRemovedID]].Destructive; d != "removeEtcdMembers" {
		t.Errorf("removal's opt-in %q", d)
	}
	for _, st := range all {
		if st.Destructive != "" && st.ID != steps.EtcdRemovedID {
			t.Errorf("%s is destructive too (%s)", st.ID, st.Destructive)
		}
	}
	if got := destructiveOptIns(s.Destructive); len(got) != 0 {
		t.Errorf("local-ha grants %v", got)
	}
	if got := destructiveOptIns(spec.Destructive{RemoveEtcdMembers: true}); !slices.Equal(got, []string{"removeEtcdMembers"}) {
		t.Errorf("removeEtcdMembers grants %v", got)
	}
}
