package hub

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/promtext"
)

// ServeMetrics serves GET /metrics (WriteMetrics) over TLS on lis until ctx
// ends, with a certificate for the hub's names that lacks the hub's policy
// OID, so Prometheus built with an older Go can parse it. Like the node's /metrics, a caller
// must present a cluster certificate that is not revoked and whose role may
// read (Prometheus holds a reader certificate); unlike the gRPC port, no
// anonymous caller gets as far as a request.
func (s *Server) ServeMetrics(ctx context.Context, lis net.Listener) error {
	return promtext.ServeTLS(ctx, lis, s.metrics.Clone(), s.serveMetrics, nil)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "a client certificate from the cluster CA is required", http.StatusUnauthorized)
		return
	}
	cert := r.TLS.PeerCertificates[0]
	pe, err := s.ca.Authenticate(cert, time.Now(), s.hub.Revocations())
	if err != nil {
		if errors.Is(err, pki.ErrRevoked) {
			s.hub.refusedRevoked(WithRemote(r.Context(), r.RemoteAddr), cert, "GET /metrics")
		}
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if !pki.Allows(pe.Role, pki.ActionRead) {
		http.Error(w, pe.Actor()+" may not read metrics", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := s.hub.WriteMetrics(w); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
