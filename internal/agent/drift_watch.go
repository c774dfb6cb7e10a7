package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// driftKinds are every kind a drift item can have, so each series exists
// (at zero) before the first difference.
var driftKinds = []string{DriftInvalid, DriftMissing, DriftModified, DriftUnexpected, DriftWritable}

// driftStats counts drift checks, whoever asked: the node API, a scrape or
// the periodic watch.
type driftStats struct {
	mu      sync.Mutex
	checks  uint64         // checks run since kubedosd started
	drifted uint64         // of those, checks that found a difference
	last    map[string]int // kind → items at the latest check
	lastAt  time.Time
}

// checkDrift runs CheckDrift and counts it.
func (n *NodeAPI) checkDrift(ctx context.Context) ([]api.DriftItem, error) {
	items, err := n.CheckDrift(ctx)
	if err != nil {
		return nil, err
	}
	n.drift.mu.Lock()
	defer n.drift.mu.Unlock()
	n.drift.checks++
	if len(items) > 0 {
		n.drift.drifted++
	}
	n.drift.last = map[string]int{}
	for _, it := range items {
		n.drift.last[it.Kind]++
	}
	n.drift.lastAt = n.cfg.Now()
	return items, nil
}

// WatchDrift checks for drift every interval until ctx ends and writes to
// the journal whenever the set of differences changes, each one named, so
// drift is on record even when nobody asks.
func (n *NodeAPI) WatchDrift(ctx context.Context, every time.Duration) {
	var prev []string
	for {
		if items, err := n.checkDrift(ctx); err == nil {
			cur := make([]string, 0, len(items))
			for _, it := range items {
				cur = append(cur, driftLine(it))
			}
			if !slices.Equal(cur, prev) {
				if len(cur) == 0 {
					n.cfg.Logf("drift: none (the writable state matches the applied configuration)")
				}
				for _, l := range cur {
					n.cfg.Logf("drift: %s", l)
				}
				prev = cur
			}
		}
		if !sleep(ctx, n.cfg.Clock, every) {
			return
		}
	}
}

func driftLine(it api.DriftItem) string {
	s := it.Kind + " " + it.Path
	if it.Expected != "" || it.Actual != "" {
		s += fmt.Sprintf(" (expected %q, got %q)", it.Expected, it.Actual)
	}
	if it.Detail != "" {
		s += ": " + it.Detail
	}
	return s
}
