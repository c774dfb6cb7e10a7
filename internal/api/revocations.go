package api

import (
	"context"

	"google.golang.org/grpc"
)

// RevocationsService is the hub's revocation list, for node APIs: any
// certificate from the cluster CA that is not revoked may read it (nodes,
// and operators from reader up). It is a service of its own on the hub's
// gRPC server, beside Enrollment and Admin.
const RevocationsService = "kubedos.hub.v1.Revocations"

// RevokedRequest asks for the revoked serials.
type RevokedRequest struct{}

// RevokedResponse lists every revoked certificate serial (pki.SerialString
// form, sorted). Revocations only grow: a node adds them to what it knows.
type RevokedResponse struct {
	Serials []string `json:"serials"`
	// MaxAgeSeconds is the spec's trust.revocationMaxAge: how old a node
	// may let its copy of the list grow before it fails closed.
	MaxAgeSeconds int64 `json:"maxAgeSeconds,omitempty"`
}

// RevocationsServer is implemented by the hub.
type RevocationsServer interface {
	Revoked(context.Context, *RevokedRequest) (*RevokedResponse, error)
}

// RegisterRevocations serves impl on s.
func RegisterRevocations(s *grpc.Server, impl RevocationsServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: RevocationsService,
		HandlerType: (*RevocationsServer)(nil),
		Methods:     []grpc.MethodDesc{unary(RevocationsService, "Revoked", RevocationsServer.Revoked)},
	}, impl)
}

// RevocationsClient reads the hub's revocation list.
type RevocationsClient struct{ cc grpc.ClientConnInterface }

// NewRevocationsClient wraps a connection made with DialOptions and a
// client certificate.
func NewRevocationsClient(cc grpc.ClientConnInterface) *RevocationsClient {
	return &RevocationsClient{cc}
}

func (c *RevocationsClient) Revoked(ctx context.Context) (*RevokedResponse, error) {
	return invoke[RevokedResponse](ctx, c.cc, "/"+RevocationsService+"/Revoked", &RevokedRequest{})
}
