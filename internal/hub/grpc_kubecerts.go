package hub

import (
	"context"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

type kubeCertsService struct{ s *Server }

// Holds answers a node's own certificate with what its role holds.
func (k kubeCertsService) Holds(ctx context.Context, _ *api.KubeHoldsRequest) (*api.KubeHoldsResponse, error) {
	pe, err := k.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	held, err := k.s.hub.KubeCertsHeld(ctx, pe)
	if err != nil {
		return nil, err
	}
	out := &api.KubeHoldsResponse{Certificates: []string{}, Plan: held.Plan}
	if held.KubernetesCA != nil {
		out.KubernetesCA = held.KubernetesCA.Raw
	}
	for _, c := range held.Certs {
		out.Certificates = append(out.Certificates, string(c))
	}
	return out, nil
}

// Issue answers a node's own certificate (authenticate checks chain,
// validity and revocation); the name comes from that certificate, and its
// NotBefore says how fresh the quote behind it is.
func (k kubeCertsService) Issue(ctx context.Context, r *api.KubeCertsRequest) (*api.KubeCertsResponse, error) {
	pe, err := k.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	p, _ := peer.FromContext(ctx)
	leaf := p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0] // authenticate checked both
	got, err := k.s.hub.IssueKubeCerts(ctx, pe, leaf.NotBefore.Add(pki.Backdate), r.CSRs)
	if err != nil {
		return nil, err
	}
	out := &api.KubeCertsResponse{Certificates: map[string][]byte{}, NotAfter: map[string]time.Time{},
		KubernetesCA: got.KubernetesCA.Raw, EtcdCA: got.EtcdCA.Raw, FrontProxyCA: got.FrontProxy.Raw,
		ServiceAccountPub: got.SAPubPEM, ServiceAccountKey: got.SAKeyPEM}
	for name, c := range got.Certs {
		out.Certificates[string(name)] = c.Raw
		out.NotAfter[string(name)] = c.NotAfter
	}
	return out, nil
}

// Admin answers an operator's certificate (admin role only: the hub checks
// it) with a Kubernetes admin credential for the CSR's key.
func (k kubeCertsService) Admin(ctx context.Context, r *api.KubeAdminRequest) (*api.KubeAdminResponse, error) {
	pe, err := k.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	got, err := k.s.hub.IssueKubeAdmin(ctx, pe, r.CSR)
	if err != nil {
		return nil, err
	}
	return &api.KubeAdminResponse{Certificate: got.Cert.Raw, KubernetesCA: got.KubernetesCA.Raw, Server: got.Server,
		User: got.Cert.Subject.CommonName, NotAfter: got.Cert.NotAfter}, nil
}
