package api

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// ObservabilityService gives the prometheus node what it runs
// (docs/observability.md): Prometheus's configuration made by the hub from
// its spec, with scrape targets from its registry (an enrolled node is
// scraped, any other is not), and a reader certificate to scrape with. The
// caller authenticates with its node certificate; only an enrolled node
// whose spec role is prometheus is answered in full, a grafana node with
// where Prometheus is (it serves the dashboards) and nothing else.
const ObservabilityService = "kubedos.hub.v1.Observability"

// ObservabilityRequest optionally carries a PKCS #10 CSR (DER) for the key
// Prometheus scrapes with, made on the node and never sent: asked for when
// the node has no reader certificate or it is due for renewal. Only the
// CSR's public key is used.
type ObservabilityRequest struct {
	CSR []byte `json:"csr,omitempty"`
}

// ObservabilityResponse is the configuration's files by path relative to
// the node's observability directory (observability.Files), the cluster
// CA (PEM) Prometheus checks every node and the hub against, and, when a
// CSR came, the reader certificate (DER). Enabled is false when the spec
// has no Prometheus on this hub: a fact, not a refusal.
type ObservabilityResponse struct {
	Enabled bool `json:"enabled"`
	// Dashboards: the caller serves the dashboards (on DashboardsPort),
	// querying Prometheus at Listen: the grafana node, or the prometheus
	// node when the spec has no grafana node.
	Dashboards bool `json:"dashboards,omitempty"`
	// Cluster is the spec's name, shown on the dashboards.
	Cluster string `json:"cluster,omitempty"`
	// Listen is where Prometheus listens: the node's wg-observability
	// address and port, which must be up before it starts.
	Listen      string            `json:"listen,omitempty"`
	Files       map[string][]byte `json:"files,omitempty"`
	CA          []byte            `json:"ca,omitempty"`
	Certificate []byte            `json:"certificate,omitempty"`
	NotAfter    time.Time         `json:"notAfter,omitzero"`
	// KubeCA (PEM) and KubeCertificate (DER, when a CSR came) are the
	// Kubernetes CA and the metrics credential (O system:monitoring) for the
	// same key, to scrape the API servers and kubelets: set when the spec
	// runs Kubernetes and the hub holds its CAs.
	KubeCA          []byte `json:"kubeCA,omitempty"`
	KubeCertificate []byte `json:"kubeCertificate,omitempty"`
}

// MaxObservabilityFiles bounds the files a response may carry: a target
// file per node and a handful more; a node reading more is talking to a
// broken or hostile hub.
const MaxObservabilityFiles = 1024

// ObservabilityServer is implemented by the hub.
type ObservabilityServer interface {
	Config(context.Context, *ObservabilityRequest) (*ObservabilityResponse, error)
}

// RegisterObservability serves impl on s.
func RegisterObservability(s *grpc.Server, impl ObservabilityServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: ObservabilityService,
		HandlerType: (*ObservabilityServer)(nil),
		Methods:     []grpc.MethodDesc{unary(ObservabilityService, "Config", ObservabilityServer.Config)},
	}, impl)
}

// ObservabilityClient asks the hub for the prometheus node's configuration.
type ObservabilityClient struct{ cc grpc.ClientConnInterface }

// NewObservabilityClient wraps a connection made with DialOptions and the
// node's certificate.
func NewObservabilityClient(cc grpc.ClientConnInterface) *ObservabilityClient {
	return &ObservabilityClient{cc}
}

func (c *ObservabilityClient) Config(ctx context.Context, r *ObservabilityRequest) (*ObservabilityResponse, error) {
	return invoke[ObservabilityResponse](ctx, c.cc, "/"+ObservabilityService+"/Config", r)
}
