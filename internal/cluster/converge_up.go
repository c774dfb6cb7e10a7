package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// Converged: one convergence step finished (or the run did, with Done).
type Converged struct {
	Step, Outcome, Detail string
	Done                  bool
	Counts                converge.Counts
}

func (e Converged) String() string {
	if e.Done {
		c := e.Counts
		return fmt.Sprintf("converged: %d changed, %d unchanged, %d failed, %d skipped", c.Changed, c.Unchanged, c.Failed, c.Skipped)
	}
	if e.Detail != "" {
		return fmt.Sprintf("converge %s: %s (%s)", e.Step, e.Outcome, e.Detail)
	}
	return fmt.Sprintf("converge %s: %s", e.Step, e.Outcome)
}

// ConvergeUp is the last step of cluster up: one convergence run against
// the cluster's hub, recorded there. A node's planes come up some seconds
// after it enrolls, and a restarted node's API only once it booted, so
// failed checks are retried for about eight minutes (eight more for each
// further API server) before the run gives up on them.
func (c *Cluster) ConvergeUp(ctx context.Context) (*ConvergeResult, error) {
	addr, _, where, err := c.FindHub()
	if err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, fmt.Errorf("converge: no hub answers for cluster %s (looked at %s)", c.Spec.Metadata.Name, where)
	}
	tc, err := c.access().TLS("")
	if err != nil {
		return nil, err
	}
	cfg := ConvergeConfig{Spec: c.Spec, HubAddr: addr, ClientTLS: tc, Events: c.convergeEvent}
	if c.Manifest != nil {
		cfg.Builds = RoleBuilds(c.Manifest)
	}
	// About eight minutes of retries: a node whose VM this run restarted
	// is still enrolled at the hub from before, so the wait for enrollment
	// passes at once while it boots (over a minute under TCG) and its node
	// API refuses connections until then; three control planes starting
	// etcd and their API servers at once under TCG take minutes more
	// than one. A run with nothing failing retries nothing.
	cfg.Engine.Retries, cfg.Engine.Backoff, cfg.Engine.MaxBackoff = upRetries(c.Spec), time.Second, 5*time.Second
	return Converge(ctx, cfg)
}

// upRetries is ConvergeUp's retries for s: 96 (about eight minutes at
// five seconds), times the number of API servers, which start one after
// the other (each waits for the earlier ones to be ready: agent's
// apiServerWaits), each taking minutes under TCG.
func upRetries(s *spec.ClusterSpec) int {
	n := 0
	if s.Workloads.Kubernetes.Enabled {
		for _, node := range s.Topology.Nodes {
			if slices.Contains(kubeplan.ComponentsFor(s, node.Role), kubeplan.APIServer) {
				n++
			}
		}
	}
	return 96 * max(n, 1)
}

func (c *Cluster) convergeEvent(e converge.Event) {
	switch e.Kind {
	case converge.StepFinished:
		r := e.Result
		detail := r.Error
		if detail == "" {
			detail = r.Diff
		}
		c.ev.emit(Converged{Step: r.ID, Outcome: string(r.Outcome), Detail: oneLine(detail)})
	case converge.RunFinished:
		if e.Counts != nil {
			c.ev.emit(Converged{Done: true, Counts: *e.Counts})
		}
	}
}

// oneLine is s's first line, marked when more followed.
func oneLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}
