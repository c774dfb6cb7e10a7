// Package targettest is the one conformance suite every target.Target
// passes: the Proxmox stand-in in unit tests, qemu in integration tests.
package targettest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/target"
)

// Harness is a target under test and the nodes it can make (at least
// one): images it can use, VMIDs free on it.
type Harness struct {
	Target target.Target
	Nodes  []target.Node
}

// registry records EK registrations, refusing them when told to.
type registry struct {
	mu     sync.Mutex
	got    map[string]string
	refuse error
}

func (r *registry) register(_ context.Context, node, ek string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse != nil {
		return r.refuse
	}
	r.got[node] = ek
	return nil
}

// Suite runs the conformance checks on a fresh target from newTarget.
func Suite(t *testing.T, newTarget func(t *testing.T) Harness) {
	h := newTarget(t)
	if len(h.Nodes) == 0 {
		t.Fatal("the harness has no nodes")
	}
	tg, nodes := h.Target, h.Nodes
	ctx := context.Background()
	state := func(name string) target.State {
		t.Helper()
		st, err := tg.Status(ctx, name)
		if err != nil {
			t.Fatalf("Status(%s): %v", name, err)
		}
		return st.State
	}
	ensure := func(reg *registry, ns []target.Node) ([]target.Ensured, error) {
		var out []target.Ensured
		err := tg.EnsureNodes(ctx, ns, reg.register, func(e target.Ensured) { out = append(out, e) })
		return out, err
	}
	reg := &registry{got: map[string]string{}}

	for i := 0; i < 2; i++ {
		if desc, err := tg.EnsureNetwork(ctx); err != nil || desc == "" {
			t.Fatalf("EnsureNetwork (run %d) = %q, %v", i+1, desc, err)
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = tg.Destroy(context.Background(), n.Name)
		}
		_ = tg.RemoveNetwork(context.Background())
	})
	for _, n := range nodes {
		if got := state(n.Name); got != target.StateAbsent {
			t.Errorf("%s before EnsureNodes: %s, want %s", n.Name, got, target.StateAbsent)
		}
	}
	if err := tg.Start(ctx, nodes[0].Name); !errors.Is(err, target.ErrUnknownNode) {
		t.Errorf("Start of a node never made: %v, want ErrUnknownNode", err)
	}

	t.Run("ensure makes and starts every node, each EK registered", func(t *testing.T) {
		res, err := ensure(reg, nodes)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != len(nodes) {
			t.Fatalf("done called %d times for %d nodes", len(res), len(nodes))
		}
		for i, e := range res {
			n := nodes[i]
			if e.Name != n.Name || e.Action != target.ActionCreated || e.EKHash == "" || reg.got[n.Name] != e.EKHash {
				t.Errorf("outcome %+v, registered %q: want %s created with its EK registered", e, reg.got[n.Name], n.Name)
			}
			st, err := tg.Status(ctx, n.Name)
			if err != nil || st.State != target.StateRunning || st.Console == "" {
				t.Errorf("%s: status %+v, %v; want running, with its console", n.Name, st, err)
			}
		}
	})

	t.Run("ensure again changes nothing", func(t *testing.T) {
		before := len(reg.got)
		reg.got = map[string]string{}
		res, err := ensure(reg, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res {
			if e.Action != target.ActionUnchanged {
				t.Errorf("%s: %s, want unchanged", e.Name, e.Action)
			}
		}
		if len(reg.got) != 0 {
			t.Errorf("%d of %d EKs registered again: %v", len(reg.got), before, reg.got)
		}
	})

	n := nodes[0].Name
	t.Run("stop and start", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := tg.Stop(ctx, n); err != nil {
				t.Fatalf("Stop (run %d): %v", i+1, err)
			}
			if got := state(n); got != target.StateStopped {
				t.Fatalf("after Stop: %s, want stopped", got)
			}
		}
		for i := 0; i < 2; i++ {
			if err := tg.Start(ctx, n); err != nil {
				t.Fatalf("Start (run %d): %v", i+1, err)
			}
			if got := state(n); got != target.StateRunning {
				t.Fatalf("after Start: %s, want running", got)
			}
		}
	})

	t.Run("destroy", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := tg.Destroy(ctx, n); err != nil {
				t.Fatalf("Destroy (run %d): %v", i+1, err)
			}
			if got := state(n); got != target.StateAbsent {
				t.Fatalf("after Destroy: %s, want absent", got)
			}
		}
	})

	t.Run("a refused EK leaves the machine not running", func(t *testing.T) {
		refusing := &registry{got: map[string]string{}, refuse: errors.New("hub says no")}
		_, err := ensure(refusing, nodes[:1])
		if err == nil {
			t.Fatal("EnsureNodes succeeded with the registration refused")
		}
		if got := state(n); !slices.Contains([]target.State{target.StateAbsent, target.StateStopped}, got) {
			t.Errorf("after a refused registration: %s, want absent or stopped", got)
		}
	})
}
