package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
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
		ev.wait("etcd quorum %s: waiting for %s", when, strings.Join(bad, "; "))
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd quorum %s: not every member healthy within %s (%s)", when, g.Wait, strings.Join(bad, "; "))
		case <-time.After(every):
		}
	}
}

// etcdHealthOf reads the "etcd" check of a node's health; a node without
// that check (no etcd, or a kubedosd before it) is not healthy: the gate
// cannot tell.
func etcdHealthOf(h *api.Health) (bool, string) {
	for _, c := range h.Checks {
		if c.Name == "etcd" {
			if c.OK {
				return true, c.Detail
			}
			return false, c.Detail
		}
	}
	return false, "no etcd health check (not running etcd yet, or unreachable)"
}
