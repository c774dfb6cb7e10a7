package hub

import (
	"context"

	"github.com/kubedos/kubedos/internal/api"
)

type observabilityService struct{ s *Server }

// Config answers a node's own certificate (authenticate checks chain,
// validity and revocation); the name comes from that certificate.
func (o observabilityService) Config(ctx context.Context, r *api.ObservabilityRequest) (*api.ObservabilityResponse, error) {
	pe, err := o.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	got, err := o.s.hub.ObservabilityConfig(ctx, pe, r.CSR)
	if err != nil {
		return nil, err
	}
	out := &api.ObservabilityResponse{Enabled: got.Enabled, Dashboards: got.Dashboards, Cluster: got.Cluster, Listen: got.Listen, Files: got.Files, CA: got.CAPEM,
		KubeCA: got.KubeCAPEM}
	if got.Reader != nil {
		out.Certificate, out.NotAfter = got.Reader.Raw, got.Reader.NotAfter
	}
	if got.Kube != nil {
		out.KubeCertificate = got.Kube.Raw
	}
	return out, nil
}
