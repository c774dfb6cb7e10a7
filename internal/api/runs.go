package api

import (
	"context"
	"time"

	"github.com/kubedos/kubedos/internal/converge"
	"google.golang.org/grpc"
)

// RunsService keeps the records of convergence runs at the hub: the
// engine records each run (operator), plan and status read the last ones
// (reader). Every record is audited; the hub keeps only the last few.
const RunsService = "kubedos.hub.v1.Runs"

// Bounds of a run record as the hub keeps it: a longer diff or error is
// cut (and says so), a run with more steps is refused.
const (
	MaxRunSteps      = 512
	MaxRunDiffBytes  = 4 << 10
	MaxRunErrorBytes = 1 << 10
	// MaxRunsListed bounds one ListRuns answer.
	MaxRunsListed = 16
)

// RunRecord is one convergence run.
type RunRecord struct {
	// Seq is the hub's number for the run (set by the hub, from 1).
	Seq uint64 `json:"seq,omitempty"`
	// Actor is who recorded it (set by the hub from the client certificate).
	Actor   string `json:"actor,omitempty"`
	Cluster string `json:"cluster"`
	// Outcome is converged, drifted (a check-only run found drift) or failed.
	Outcome  string        `json:"outcome"`
	Started  time.Time     `json:"started"`
	Ended    time.Time     `json:"ended"`
	Duration time.Duration `json:"duration"`
	Counts   RunCounts     `json:"counts"`
	Steps    []RunStep     `json:"steps"`
}

// RunCounts tallies a run's step outcomes: the engine's own tally, so the
// two cannot drift apart.
type RunCounts = converge.Counts

// RunStep is one step of a run.
type RunStep struct {
	ID     string   `json:"id"`
	Phase  string   `json:"phase,omitempty"`
	Reads  []string `json:"reads,omitempty"`
	Writes []string `json:"writes,omitempty"`
	// Outcome is changed, unchanged, drifted, failed, skipped or cancelled.
	Outcome  string        `json:"outcome"`
	Diff     string        `json:"diff,omitempty"`
	Error    string        `json:"error,omitempty"`
	Cause    string        `json:"cause,omitempty"`
	Attempts int           `json:"attempts,omitempty"`
	Duration time.Duration `json:"duration"`
}

// RecordRunRequest records a finished run.
type RecordRunRequest struct {
	Run RunRecord `json:"run"`
}

// RunRecorded is the number the hub gave the run.
type RunRecorded struct {
	Seq uint64 `json:"seq"`
}

// ListRunsRequest asks for the last Limit runs (all kept when 0).
type ListRunsRequest struct {
	Limit int `json:"limit,omitempty"`
}

// ListRunsResponse is the last runs, newest first.
type ListRunsResponse struct {
	Runs []RunRecord `json:"runs"`
}

// RunsServer is implemented by the hub.
type RunsServer interface {
	RecordRun(context.Context, *RecordRunRequest) (*RunRecorded, error)
	ListRuns(context.Context, *ListRunsRequest) (*ListRunsResponse, error)
}

// RegisterRuns serves impl on s.
func RegisterRuns(s *grpc.Server, impl RunsServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: RunsService,
		HandlerType: (*RunsServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(RunsService, "RecordRun", RunsServer.RecordRun),
			unary(RunsService, "ListRuns", RunsServer.ListRuns),
		},
	}, impl)
}

// RunsClient records and reads convergence runs.
type RunsClient struct{ cc grpc.ClientConnInterface }

// NewRunsClient wraps a connection made with DialOptions and an operator
// client certificate.
func NewRunsClient(cc grpc.ClientConnInterface) *RunsClient { return &RunsClient{cc} }

func (c *RunsClient) RecordRun(ctx context.Context, r *RunRecord) (*RunRecorded, error) {
	return invoke[RunRecorded](ctx, c.cc, "/"+RunsService+"/RecordRun", &RecordRunRequest{Run: *r})
}

func (c *RunsClient) ListRuns(ctx context.Context, limit int) (*ListRunsResponse, error) {
	return invoke[ListRunsResponse](ctx, c.cc, "/"+RunsService+"/ListRuns", &ListRunsRequest{Limit: limit})
}
