package hub

import (
	"context"

	"github.com/kubedos/kubedos/internal/api"
)

// registerRuns serves the convergence run records (api.RunsService) on s.
// NewServer calls it; calling it again does nothing.
func registerRuns(s *Server) {
	if _, ok := s.grpc.GetServiceInfo()[api.RunsService]; ok {
		return
	}
	api.RegisterRuns(s.grpc, runsService{s})
}

type runsService struct{ s *Server }

func (r runsService) RecordRun(ctx context.Context, req *api.RecordRunRequest) (*api.RunRecorded, error) {
	pe, err := r.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	seq, err := r.s.hub.RecordRun(ctx, pe, req.Run)
	if err != nil {
		return nil, err
	}
	return &api.RunRecorded{Seq: seq}, nil
}

func (r runsService) ListRuns(ctx context.Context, req *api.ListRunsRequest) (*api.ListRunsResponse, error) {
	pe, err := r.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	runs, err := r.s.hub.Runs(ctx, pe, req.Limit)
	if err != nil {
		return nil, err
	}
	return &api.ListRunsResponse{Runs: runs}, nil
}
