package api

import (
	"context"
	"time"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"google.golang.org/grpc"
)

// KubeCertsService issues a node the Kubernetes certificates of its spec
// role (docs/kubernetes.md). The caller authenticates with its node
// certificate, and only with the one the hub issued it moments ago after a
// fresh quote (a renewal): no Kubernetes certificate without a fresh quote.
const KubeCertsService = "kubedos.hub.v1.KubeCerts"

// MaxKubeCSRs bounds a request: more than any role holds.
const MaxKubeCSRs = 16

// KubeCertsRequest carries one PKCS #10 CSR (DER) per certificate wanted,
// keyed by its name (pki.KubeCert: "kubelet-client", "apiserver", …). Only
// each CSR's public key is used: the hub sets subject and SANs from the
// spec. Keys are made on the node and never leave it.
type KubeCertsRequest struct {
	CSRs map[string][]byte `json:"csrs"`
}

// KubeCertsResponse is the certificates (DER, by name) and the CAs the
// node's components trust (DER).
type KubeCertsResponse struct {
	Certificates map[string][]byte    `json:"certificates"`
	NotAfter     map[string]time.Time `json:"notAfter"`
	KubernetesCA []byte               `json:"kubernetesCA"`
	EtcdCA       []byte               `json:"etcdCA"`
	FrontProxyCA []byte               `json:"frontProxyCA"`
	// ServiceAccountPub (PKIX PEM) verifies service-account tokens: sent to
	// control-plane nodes. ServiceAccountKey (PKCS #8 PEM) signs them: the
	// one cluster-wide private key the hub hands out, to control-plane
	// nodes only, over this mutually authenticated channel.
	ServiceAccountPub []byte `json:"serviceAccountPub,omitempty"`
	ServiceAccountKey []byte `json:"serviceAccountKey,omitempty"`
}

// KubeHoldsRequest asks which certificates the caller's spec role holds.
type KubeHoldsRequest struct{}

// KubeHoldsResponse names them (pki.KubeCert), so the node makes a key and
// a CSR for each and for nothing else, and carries the node's Plan: what it
// runs of Kubernetes and how (kubeplan.For over the hub's spec). The
// node's desired Kubernetes state comes from the hub, over this mutually
// authenticated channel, to nodes the hub issues certificates to; nil for
// a node that runs nothing, or when the hub issues no Kubernetes
// certificates.
type KubeHoldsResponse struct {
	Certificates []string       `json:"certificates"`
	Plan         *kubeplan.Plan `json:"plan,omitempty"`
	// KubernetesCA (DER) comes with a plan: the one certificate a load
	// balancer, which holds none, needs (it checks the API servers').
	KubernetesCA []byte `json:"kubernetesCA,omitempty"`
}

// KubeAdminRequest asks for an operator's Kubernetes admin credential: a
// PKCS #10 CSR (DER) for a key made on the operator's machine, which never
// leaves it. Only the key is used: the hub sets the identity.
type KubeAdminRequest struct {
	CSR []byte `json:"csr"`
}

// KubeAdminResponse is a kubeconfig's worth: the client certificate (DER;
// user User in group system:masters, for at most an hour), the Kubernetes
// CA (DER) that signed it and the API server's, and Server, the URL an
// operator machine reaches the API server at (the VIP when the spec has
// load balancers holding one, else the first control-plane node's LAN
// address).
type KubeAdminResponse struct {
	Certificate  []byte    `json:"certificate"`
	KubernetesCA []byte    `json:"kubernetesCA"`
	Server       string    `json:"server"`
	User         string    `json:"user"`
	NotAfter     time.Time `json:"notAfter"`
}

// KubeCertsServer is implemented by the hub.
type KubeCertsServer interface {
	Holds(context.Context, *KubeHoldsRequest) (*KubeHoldsResponse, error)
	Issue(context.Context, *KubeCertsRequest) (*KubeCertsResponse, error)
	// Admin issues the caller, an operator of role admin, a Kubernetes
	// admin credential (audited as kubernetes.admin).
	Admin(context.Context, *KubeAdminRequest) (*KubeAdminResponse, error)
}

// RegisterKubeCerts serves impl on s.
func RegisterKubeCerts(s *grpc.Server, impl KubeCertsServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: KubeCertsService,
		HandlerType: (*KubeCertsServer)(nil),
		Methods: []grpc.MethodDesc{unary(KubeCertsService, "Holds", KubeCertsServer.Holds),
			unary(KubeCertsService, "Issue", KubeCertsServer.Issue),
			unary(KubeCertsService, "Admin", KubeCertsServer.Admin)},
	}, impl)
}

// KubeCertsClient asks the hub for Kubernetes certificates.
type KubeCertsClient struct{ cc grpc.ClientConnInterface }

// NewKubeCertsClient wraps a connection made with DialOptions and the
// node's freshly renewed certificate (Holds, Issue), or an admin's client
// certificate (Admin).
func NewKubeCertsClient(cc grpc.ClientConnInterface) *KubeCertsClient { return &KubeCertsClient{cc} }

func (c *KubeCertsClient) Holds(ctx context.Context) (*KubeHoldsResponse, error) {
	return invoke[KubeHoldsResponse](ctx, c.cc, "/"+KubeCertsService+"/Holds", &KubeHoldsRequest{})
}

func (c *KubeCertsClient) Issue(ctx context.Context, r *KubeCertsRequest) (*KubeCertsResponse, error) {
	return invoke[KubeCertsResponse](ctx, c.cc, "/"+KubeCertsService+"/Issue", r)
}

func (c *KubeCertsClient) Admin(ctx context.Context, csr []byte) (*KubeAdminResponse, error) {
	return invoke[KubeAdminResponse](ctx, c.cc, "/"+KubeCertsService+"/Admin", &KubeAdminRequest{CSR: csr})
}
