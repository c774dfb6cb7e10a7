package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
)

// EtcdHealthFunc asks a node whether its etcd member is healthy (its
// health check "etcd"): ok, or why not.
type EtcdHealthFunc func(ctx context.Context, node string) (ok bool, detail string)

// QuorumGate keeps a rolling upgrade from taking an etcd quorum away:
// before an etcd member goes down every other member must be healthy,
// and after it is back it must be healthy again before the roll moves on.
// One member down at a time, and never while another is still rejoining.
type QuorumGate struct {
	Members []string
	Health  EtcdHealthFunc
	// Wait bounds each wait; Every paces the polls (default 3 s).
	Wait, Every time.Duration
	Events      Events
}

// Wrap is one with the gate around it for members; other nodes pass
// through.
func (g QuorumGate) Wrap(one func(context.Context, string) (*Outcome, error)) func(context.Context, string) (*Outcome, error) {
	return func(ctx context.Context, name string) (*Outcome, error) {
		if !slices.Contains(g.Members, name) {
			return one(ctx, name)
		}
		var others []string
		for _, m := range g.Members {
			if m != name {
				others = append(others, m)
			}
		}
		if err := g.wait(ctx, others, "before taking "+name+" down"); err != nil {
			return nil, err
		}
		o, err := one(ctx, name)
		if err != nil {
			return o, err
		}
		if err := g.wait(ctx, []string{name}, "after "+name+"'s upgrade"); err != nil {
			return o, err
		}
		return o, nil
	}
}

// wait polls until every node in nodes reports its member healthy.
func (g QuorumGate) wait(ctx context.Context, nodes []string, when string) error {
	ev := events{g.Events}
	every := g.Every
	if every == 0 {
		every = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, g.Wait)
	defer cancel()
	var last []string
	for {
		var bad []string
		for _, n := range nodes {
			if ok, detail := g.Health(ctx, n); !ok {
				bad = append(bad, n+": "+detail)
			}
		}
		if len(bad) == 0 {
			return nil
		}
		// A poll the deadline cut short says only that; the one before
		// it says why the members were not healthy.
		if ctx.Err() != nil && last != nil {
			bad = last
		}
		last = bad
		ev.wait("etcd quorum %s: waiting for %s", when, strings.Join(bad, "; "))
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd quorum %s: not every member healthy within %s (%s)", when, g.Wait, strings.Join(bad, "; "))
		case <-time.After(every):
		}
	}
}

// EtcdQuorum is the gate a roll of s needs: its etcd members, each asked
// through dial (the node's own API, health check "etcd"). Nil when s has
// fewer than two members: nothing to keep.
func EtcdQuorum(s *spec.ClusterSpec, dial func(name string) (*api.NodeClient, func(), error), wait, every time.Duration, ev Events) *QuorumGate {
	var members []string
	for _, m := range kubeplan.EtcdNodes(s) {
		members = append(members, m.Name)
	}
	if len(members) < 2 {
		return nil
	}
	return &QuorumGate{Members: members, Wait: wait, Every: every, Events: ev, Health: nodesEtcdHealth(dial)}
}

// nodesEtcdHealth asks each node's own API, through dial, for its "etcd"
// check; a node that does not answer is unreachable.
func nodesEtcdHealth(dial func(name string) (*api.NodeClient, func(), error)) EtcdHealthFunc {
	return func(ctx context.Context, name string) (bool, string) {
		ok, detail, err := askNodeEtcd(ctx, func() (*api.NodeClient, func(), error) { return dial(name) })
		if err != nil {
			return false, "unreachable: " + err.Error()
		}
		return ok, detail
	}
}

// askNodeEtcd asks a node's own API (through dial) for its health and
// reads the "etcd" check; err when the node could not be asked. The
// quorum gate and the replacement drill share it.
func askNodeEtcd(ctx context.Context, dial func() (*api.NodeClient, func(), error)) (bool, string, error) {
	h, err := callNode(ctx, dial, 10*time.Second, (*api.NodeClient).Health)
	if err != nil {
		return false, "", err
	}
	ok, detail := steps.EtcdCheck(h)
	return ok, detail, nil
}

// callNode dials a node, makes one call bounded by limit, and closes the
// connection.
func callNode[T any](ctx context.Context, dial func() (*api.NodeClient, func(), error), limit time.Duration,
	call func(*api.NodeClient, context.Context) (T, error)) (T, error) {
	cl, done, err := dial()
	if err != nil {
		var zero T
		return zero, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return call(cl, ctx)
}
