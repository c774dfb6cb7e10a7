package cluster

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/plan"
)

// RunRecord is the hub's form of a run of cluster.
func RunRecord(cluster string, rec *converge.Record) *api.RunRecord {
	out := &api.RunRecord{Cluster: cluster, Outcome: "converged", Started: rec.Started, Ended: rec.Ended, Duration: rec.Duration,
		Counts: rec.Counts, Steps: make([]api.RunStep, 0, len(rec.Steps))}
	switch c := rec.Counts; {
	case c.Failed+c.Skipped+c.Cancelled > 0:
		out.Outcome = "failed"
	case c.Drifted > 0:
		out.Outcome = "drifted"
	}
	for _, s := range rec.Steps {
		out.Steps = append(out.Steps, api.RunStep{ID: s.ID, Phase: s.Phase, Reads: s.Reads, Writes: s.Writes,
			Outcome: string(s.Outcome), Diff: s.Diff, Error: s.Error, Cause: s.Cause, Attempts: s.Attempts, Duration: s.Duration})
	}
	return out
}

// LastRun asks the hub at hubAddr for the last convergence run it keeps;
// nil when none was recorded.
func LastRun(ctx context.Context, hubAddr string, clientTLS *tls.Config) (*api.RunRecord, error) {
	cc, err := dial(clientTLS, hubAddr, api.HubServerName)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	res, err := api.NewRunsClient(cc).ListRuns(ctx, 1)
	if err != nil {
		return nil, fmt.Errorf("hub %s: last convergence run: %w", hubAddr, err)
	}
	if len(res.Runs) == 0 {
		return nil, nil
	}
	return &res.Runs[0], nil
}

// MarkLastRun marks each step of doc with its outcome in run, the hub's
// last convergence run, when run is of doc's cluster; it says whether it
// did (kubedos plan and the web console show the same).
func MarkLastRun(doc *plan.Document, run *api.RunRecord) bool {
	if run == nil || run.Cluster != doc.Cluster {
		return false
	}
	outcomes := map[string]string{}
	for _, st := range run.Steps {
		outcomes[st.ID] = st.Outcome
	}
	doc.SetLast(plan.LastRun{Seq: run.Seq, Outcome: run.Outcome, Ended: run.Ended, Actor: run.Actor}, outcomes)
	return true
}
