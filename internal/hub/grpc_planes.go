package hub

import (
	"context"

	"github.com/kubedos/kubedos/internal/api"
)

type planesService struct{ s *Server }

// Join answers an enrolled node's own certificate (JoinPlanes checks the
// role; the name comes from the certificate, never from the request).
func (p planesService) Join(ctx context.Context, r *api.JoinPlanesRequest) (*api.JoinPlanesResponse, error) {
	pe, err := p.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	ifcs, err := p.s.hub.JoinPlanes(ctx, pe, r.Keys)
	if err != nil {
		return nil, err
	}
	return &api.JoinPlanesResponse{Interfaces: ifcs}, nil
}
