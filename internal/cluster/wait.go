package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
)

// waitNodes polls the hub until every node of want is enrolled, one is
// refused (an error naming it and why), or timeout.
func (c *Cluster) waitNodes(ctx context.Context, want []spec.Node, timeout time.Duration) ([]api.Node, error) {
	admin, done, err := c.admin()
	if err != nil {
		return nil, err
	}
	defer done()
	deadline := time.Now().Add(timeout)
	for {
		res, err := admin.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		byName := map[string]api.Node{}
		for _, n := range res.Nodes {
			byName[n.Name] = n
		}
		enrolled := 0
		var bad []string
		for _, sn := range want {
			n := byName[sn.Name]
			if n.State != c.reported[sn.Name] && n.State != "" {
				c.ev.emit(NodeState{Name: sn.Name, State: string(n.State), Reason: ReasonText(n.Reason, 0)})
				c.reported[sn.Name] = n.State
			}
			switch n.State {
			case api.NodeEnrolled:
				enrolled++
			case api.NodeQuarantined, api.NodeRevoked, api.NodeFenced:
				bad = append(bad, fmt.Sprintf("%s is %s: %s", sn.Name, n.State, ReasonText(n.Reason, 0)))
			}
		}
		if len(bad) > 0 {
			return res.Nodes, fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		if enrolled == len(want) {
			c.ev.emit(Enrolled{Count: enrolled, Of: len(want), Done: true})
			return res.Nodes, nil
		}
		c.ev.emit(enrolledWaiting{Enrolled{Count: enrolled, Of: len(want)}})
		if time.Now().After(deadline) {
			return res.Nodes, fmt.Errorf("%d of %d nodes enrolled after %s; see the consoles in %s", enrolled, len(want), timeout, filepath.Join(c.Dir, "nodes"))
		}
		select {
		case <-ctx.Done():
			return res.Nodes, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// ReasonText is a refusal in one line, at most max bytes (0: whole).
func ReasonText(r *api.Refusal, max int) string {
	if r == nil {
		return ""
	}
	s := r.Check + ": " + strings.Join(strings.Fields(r.Detail), " ")
	if max > 0 && len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}

// WaitNodeAPI polls the node's API every interval until it answers a
// Version call or timeout passes; the error names the address and the last
// failure.
func WaitNodeAPI(ctx context.Context, n NodeDialer, timeout, interval time.Duration, ev Events) error {
	err := waitAnswer(ctx, timeout, interval, events{ev}, fmt.Sprintf("%s: waiting for its node API on %s", n.Name, n.Addr),
		func(ctx context.Context) error {
			cl, done, err := n.Dial()
			if err != nil {
				return err
			}
			defer done()
			_, err = cl.Version(ctx)
			return err
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: node API on %s did not answer within %s: %w", n.Name, n.Addr, timeout, err)
	}
	return err
}

// waitHub waits until the hub at c.hubAddr answers an admin call.
func (c *Cluster) waitHub(ctx context.Context, timeout time.Duration) error {
	err := waitAnswer(ctx, timeout, 2*time.Second, c.ev, "waiting for the hub on "+c.hubAddr,
		func(ctx context.Context) error {
			admin, done, err := c.admin()
			if err != nil {
				return err
			}
			defer done()
			_, err = admin.ListNodes(ctx)
			return err
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("the hub on %s did not answer within %s: %w", c.hubAddr, timeout, err)
	}
	return err
}

// waitAnswer calls call (10 s each) every interval until it succeeds, ctx
// ends (ctx.Err()) or timeout passes (the last failure), reporting waiting
// in between.
func waitAnswer(ctx context.Context, timeout, interval time.Duration, ev events, waiting string, call func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := call(callCtx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return err
		}
		ev.wait("%s", waiting)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
