package hub

import (
	"context"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

// registerRevocations serves the revocation list (api.RevocationsService)
// on s, for node APIs to check their callers against. NewServer calls it;
// calling it again does nothing. Reads are not audited: every node polls
// the list, and it tells no more than the audit log of the revocations.
func registerRevocations(s *Server) {
	if _, ok := s.grpc.GetServiceInfo()[api.RevocationsService]; ok {
		return
	}
	api.RegisterRevocations(s.grpc, revocationsService{s})
}

type revocationsService struct{ s *Server }

// Revoked answers any valid, unrevoked certificate of the cluster CA whose
// role allows reading the list: every node, and operators from reader up.
func (r revocationsService) Revoked(ctx context.Context, _ *api.RevokedRequest) (*api.RevokedResponse, error) {
	pe, err := r.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.s.hub.authorize(pe, pki.ActionReadRevocations, "revocations"); err != nil {
		return nil, err
	}
	return &api.RevokedResponse{Serials: r.s.hub.Revocations().Serials(),
		MaxAgeSeconds: int64(r.s.hub.opt.RevocationMaxAge / time.Second)}, nil
}
