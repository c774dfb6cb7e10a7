package api

import (
	"context"

	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
	"google.golang.org/grpc"
)

// PlanesService is how enrolled nodes join the WireGuard planes: a node
// registers the public half of its key for each plane and gets back the
// interfaces it should have. Only an enrolled node's own certificate may
// call it; a node revoked, fenced or quarantined is on no plane, and the
// master drops it at its next call.
const PlanesService = "kubedos.hub.v1.Planes"

// JoinPlanesRequest carries the node's public key (base64) per plane.
type JoinPlanesRequest struct {
	Keys map[spec.Plane]string `json:"keys"`
}

// JoinPlanesResponse is the node's interfaces, one per plane.
type JoinPlanesResponse struct {
	Interfaces []wg.Interface `json:"interfaces"`
}

// PlanesServer is implemented by the hub.
type PlanesServer interface {
	Join(context.Context, *JoinPlanesRequest) (*JoinPlanesResponse, error)
}

// RegisterPlanes serves impl on s.
func RegisterPlanes(s *grpc.Server, impl PlanesServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: PlanesService,
		HandlerType: (*PlanesServer)(nil),
		Methods:     []grpc.MethodDesc{unary(PlanesService, "Join", PlanesServer.Join)},
	}, impl)
}

// PlanesClient joins the planes.
type PlanesClient struct{ cc grpc.ClientConnInterface }

// NewPlanesClient wraps a connection made with DialOptions and the node's
// certificate.
func NewPlanesClient(cc grpc.ClientConnInterface) *PlanesClient { return &PlanesClient{cc} }

func (c *PlanesClient) Join(ctx context.Context, r *JoinPlanesRequest) (*JoinPlanesResponse, error) {
	return invoke[JoinPlanesResponse](ctx, c.cc, "/"+PlanesService+"/Join", r)
}
