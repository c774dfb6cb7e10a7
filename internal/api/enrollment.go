package api

import (
	"context"
	"time"

	"github.com/kubedos/kubedos/internal/attest"
	"google.golang.org/grpc"
)

// EnrollmentService is the hub's enrollment protocol (DESIGN.md §3.4). Its
// callers have no certificate yet: each call is authenticated by the TPM
// (credential activation, then a quote over a single-use nonce).
const EnrollmentService = "kubedos.hub.v1.Enrollment"

// BeginRequest opens an enrollment session: who the node claims to be and
// its TPM's EK and a fresh AK.
type BeginRequest struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`
	Identity attest.Identity `json:"identity"`
}

// BeginResponse carries the credential activation challenge.
type BeginResponse struct {
	Session   string           `json:"session"`
	Challenge attest.Challenge `json:"challenge"`
}

// ActivateRequest proves AK and EK share a TPM.
type ActivateRequest struct {
	Session string `json:"session"`
	Secret  []byte `json:"secret"`
}

// ActivateResponse is a single-use nonce to quote over, and which PCRs.
type ActivateResponse struct {
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expiresAt"`
	PCRs      []int     `json:"pcrs"`
}

// EnrollRequest is the node's evidence and its certificate request.
type EnrollRequest struct {
	Session  string          `json:"session"`
	Nonce    []byte          `json:"nonce"`
	Evidence attest.Evidence `json:"evidence"`
	// BuildID is the role image the node says it booted (the UKI's kubedos.build).
	BuildID string `json:"buildID"`
	// CSR is a PKCS#10 request (DER) for a key generated on the node.
	CSR []byte `json:"csr"`
}

// EnrollResponse is the node's short-lived identity.
type EnrollResponse struct {
	Certificate []byte    `json:"certificate"` // DER
	CA          []byte    `json:"ca"`          // DER of the cluster CA
	NotAfter    time.Time `json:"notAfter"`
}

// RenewBeginRequest asks for a nonce to renew the calling node's certificate
// (the caller authenticates with that certificate).
type RenewBeginRequest struct{}

// RenewBeginResponse is the renewal session and its nonce.
type RenewBeginResponse struct {
	Session   string    `json:"session"`
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expiresAt"`
	PCRs      []int     `json:"pcrs"`
}

// EnrollmentServer is implemented by the hub. Renewal needs a fresh quote
// under the AK the node enrolled with: a certificate is never extended on
// the strength of the old one alone.
type EnrollmentServer interface {
	Begin(context.Context, *BeginRequest) (*BeginResponse, error)
	Activate(context.Context, *ActivateRequest) (*ActivateResponse, error)
	Enroll(context.Context, *EnrollRequest) (*EnrollResponse, error)
	RenewBegin(context.Context, *RenewBeginRequest) (*RenewBeginResponse, error)
	Renew(context.Context, *EnrollRequest) (*EnrollResponse, error)
}

// RegisterEnrollment serves impl on s.
func RegisterEnrollment(s *grpc.Server, impl EnrollmentServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: EnrollmentService,
		HandlerType: (*EnrollmentServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(EnrollmentService, "Begin", EnrollmentServer.Begin),
			unary(EnrollmentService, "Activate", EnrollmentServer.Activate),
			unary(EnrollmentService, "Enroll", EnrollmentServer.Enroll),
			unary(EnrollmentService, "RenewBegin", EnrollmentServer.RenewBegin),
			unary(EnrollmentService, "Renew", EnrollmentServer.Renew),
		},
	}, impl)
}

// EnrollmentClient calls the hub's enrollment service.
type EnrollmentClient struct{ cc grpc.ClientConnInterface }

// NewEnrollmentClient wraps a connection made with DialOptions.
func NewEnrollmentClient(cc grpc.ClientConnInterface) *EnrollmentClient { return &EnrollmentClient{cc} }

func (c *EnrollmentClient) Begin(ctx context.Context, r *BeginRequest) (*BeginResponse, error) {
	return invoke[BeginResponse](ctx, c.cc, "/"+EnrollmentService+"/Begin", r)
}

func (c *EnrollmentClient) Activate(ctx context.Context, r *ActivateRequest) (*ActivateResponse, error) {
	return invoke[ActivateResponse](ctx, c.cc, "/"+EnrollmentService+"/Activate", r)
}

func (c *EnrollmentClient) Enroll(ctx context.Context, r *EnrollRequest) (*EnrollResponse, error) {
	return invoke[EnrollResponse](ctx, c.cc, "/"+EnrollmentService+"/Enroll", r)
}

func (c *EnrollmentClient) RenewBegin(ctx context.Context) (*RenewBeginResponse, error) {
	return invoke[RenewBeginResponse](ctx, c.cc, "/"+EnrollmentService+"/RenewBegin", &RenewBeginRequest{})
}

func (c *EnrollmentClient) Renew(ctx context.Context, r *EnrollRequest) (*EnrollResponse, error) {
	return invoke[EnrollResponse](ctx, c.cc, "/"+EnrollmentService+"/Renew", r)
}
