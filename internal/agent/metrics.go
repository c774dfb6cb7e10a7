package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/promtext"
	"github.com/kubedos/kubedos/internal/wg"
)

// Metrics: kubedosd serves /metrics (Prometheus text format) on
// Config.MetricsAddr over TLS with the node's certificate. Like the node
// API, a caller must present a cluster certificate that is not revoked;
// any role may read.

// ServeMetrics serves /metrics on lis until ctx ends.
func (n *NodeAPI) ServeMetrics(ctx context.Context, lis net.Listener) error {
	conf := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: n.certs.get,
		ClientCAs: pool(n.cfg.CA), ClientAuth: tls.RequireAndVerifyClientCert}
	// Failed handshakes (no or a foreign certificate) go to the journal.
	return promtext.ServeTLS(ctx, lis, conf, n.serveMetrics, log.New(logfWriter(n.cfg.Logf), "metrics: ", 0))
}

func (n *NodeAPI) serveMetrics(w http.ResponseWriter, r *http.Request) {
	n.readers("Metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := n.WriteMetrics(r.Context(), w); err != nil {
			n.cfg.Logf("metrics: %v", err)
		}
	})).ServeHTTP(w, r)
}

// readers lets through callers presenting a cluster certificate that is
// not revoked, of a role that may read. Refusals are audited (as method);
// reads are not (a scrape every few seconds would drown the journal).
func (n *NodeAPI) readers(method string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "a client certificate from the cluster CA is required", http.StatusUnauthorized)
			return
		}
		leaf := r.TLS.PeerCertificates[0]
		pe, err := pki.AuthenticateAgainst(n.cfg.CA, leaf, n.cfg.Now(), n.cfg.Revocations.Set())
		if err != nil {
			n.cfg.Audit(AuditRecord{Time: n.cfg.Now().UTC(), Actor: clipString(leaf.Subject.CommonName) + " (unverified)", Remote: r.RemoteAddr,
				Method: method, Outcome: "unauthenticated", Detail: err.Error()})
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if !pki.Allows(pe.Role, pki.ActionRead) {
			n.cfg.Audit(AuditRecord{Time: n.cfg.Now().UTC(), Actor: pe.Actor(), Remote: r.RemoteAddr, Method: method, Outcome: "denied"})
			http.Error(w, pe.Actor()+" may not read "+strings.ToLower(method), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// WriteMetrics writes the node's metrics in the Prometheus text format,
// checking drift and health afresh.
func (n *NodeAPI) WriteMetrics(ctx context.Context, w io.Writer) error {
	if _, err := n.checkDrift(ctx); err != nil {
		return err
	}
	kube := n.kubeReadiness(ctx)
	h := n.checkHealth(ctx, kube)
	var b strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	st := n.cfg.Status
	family("kubedos_node_info", "gauge", "The node, its role and the build and slot it booted.")
	fmt.Fprintf(&b, "kubedos_node_info{node=%s,role=%s,build=%s,slot=%s} 1\n", promtext.Label(n.cfg.Name), promtext.Label(n.cfg.Role), promtext.Label(st.Build), promtext.Label(st.Slot))

	n.drift.mu.Lock()
	family("kubedos_drift_items", "gauge", "Differences between the node's writable state and its applied configuration at the latest check, by kind.")
	for _, k := range driftKinds {
		fmt.Fprintf(&b, "kubedos_drift_items{kind=%s} %d\n", promtext.Label(k), n.drift.last[k])
	}
	family("kubedos_drift_checks_total", "counter", "Drift checks run since kubedosd started.")
	fmt.Fprintf(&b, "kubedos_drift_checks_total %d\n", n.drift.checks)
	family("kubedos_drift_detected_total", "counter", "Drift checks that found at least one difference.")
	fmt.Fprintf(&b, "kubedos_drift_detected_total %d\n", n.drift.drifted)
	family("kubedos_drift_last_check_timestamp_seconds", "gauge", "When drift was last checked.")
	fmt.Fprintf(&b, "kubedos_drift_last_check_timestamp_seconds %d\n", n.drift.lastAt.Unix())
	n.drift.mu.Unlock()

	family("kubedos_health_check", "gauge", "Each health check: 1 passing, 0 failing.")
	for _, c := range h.Checks {
		fmt.Fprintf(&b, "kubedos_health_check{check=%s,critical=\"%t\"} %d\n", promtext.Label(c.Name), c.Critical, promtext.Bool(c.OK))
	}
	family("kubedos_healthy", "gauge", "1 when every critical health check passes.")
	fmt.Fprintf(&b, "kubedos_healthy %d\n", promtext.Bool(h.Healthy))
	if n.cfg.Controllers != nil {
		cs := n.cfg.Controllers.Statuses()
		family("kubedos_controller_up", "gauge", "Each kubedosd controller: 1 running or done, 0 backing off, failed or stopped.")
		for _, c := range cs {
			fmt.Fprintf(&b, "kubedos_controller_up{controller=%s,state=%s} %d\n", promtext.Label(c.Name), promtext.Label(c.State), promtext.Bool(c.State == StateRunning || c.State == StateDone))
		}
		family("kubedos_controller_restarts_total", "counter", "Restarts of each kubedosd controller after a failure.")
		for _, c := range cs {
			fmt.Fprintf(&b, "kubedos_controller_restarts_total{controller=%s} %d\n", promtext.Label(c.Name), c.Restarts)
		}
	}
	if n.cfg.Planes != nil {
		n.writePlaneMetrics(&b, family)
	}
	if r := kube; r.Known {
		family("kubedos_kubernetes_node_ready", "gauge", "1 when the API server says this node's Node is Ready; 0 when it is not, or the API server could not be asked.")
		fmt.Fprintf(&b, "kubedos_kubernetes_node_ready %d\n", promtext.Bool(r.Ready && r.Err == nil))
		family("kubedos_kubernetes_api_reachable", "gauge", "1 when the API server answered this node's question about its Node.")
		fmt.Fprintf(&b, "kubedos_kubernetes_api_reachable %d\n", promtext.Bool(r.Err == nil))
	}
	// LoadX509KeyPair fills Leaf.
	if cert, err := n.certs.get(nil); err == nil && cert.Leaf != nil {
		family("kubedos_certificate_expiry_timestamp_seconds", "gauge", "When the node's enrollment certificate expires (renewal needs a fresh quote).")
		fmt.Fprintf(&b, "kubedos_certificate_expiry_timestamp_seconds %d\n", cert.Leaf.NotAfter.Unix())
		family("kubedos_certificate_renew_timestamp_seconds", "gauge", "When kubedosd renews the certificate (two thirds into its life); a renewal done replaces it.")
		fmt.Fprintf(&b, "kubedos_certificate_renew_timestamp_seconds %d\n", RenewAt(cert.Leaf).Unix())
	}
	// Admin and operator calls are refused once the list is older than the
	// maximum age (health.go); the alert compares the two.
	family("kubedos_revocations_fetched_timestamp_seconds", "gauge", "When the revocation list was last fetched from the hub (0: never).")
	fmt.Fprintf(&b, "kubedos_revocations_fetched_timestamp_seconds %d\n", unixOrZero(n.fetchedAt()))
	family("kubedos_revocations_max_age_seconds", "gauge", "Age past which the node takes its revocation list as stale and refuses admin and operator calls.")
	fmt.Fprintf(&b, "kubedos_revocations_max_age_seconds %g\n", n.revocationMaxAge().Seconds())
	_, err := io.WriteString(w, b.String())
	return err
}

// writePlaneMetrics: each plane's interface state and peers as the kernel
// reports them, so an alert can fire on a plane whose handshakes grow old
// (WireGuard renews a live session every 2 minutes).
func (n *NodeAPI) writePlaneMetrics(b *strings.Builder, family func(name, typ, help string)) {
	ifcs, joined, err := n.cfg.Planes.Report()
	family("kubedos_planes_joined_timestamp_seconds", "gauge", "When the hub last answered the node's join of the planes (0: never).")
	fmt.Fprintf(b, "kubedos_planes_joined_timestamp_seconds %d\n", unixOrZero(joined))
	family("kubedos_planes_join_ok", "gauge", "1 when the node's last join of the planes (and its apply) worked.")
	fmt.Fprintf(b, "kubedos_planes_join_ok %d\n", promtext.Bool(err == nil && !joined.IsZero()))
	sts := make([]wg.Status, 0, len(ifcs))
	for _, ifc := range ifcs {
		sts = append(sts, n.cfg.ReadPlane(ifc))
	}
	family("kubedos_plane_up", "gauge", "1 when the plane's interface exists and is up.")
	for _, st := range sts {
		fmt.Fprintf(b, "kubedos_plane_up{plane=%s,interface=%s} %d\n", promtext.Label(st.Plane), promtext.Label(st.Interface), promtext.Bool(st.Error == "" && st.Up))
	}
	family("kubedos_plane_peer_last_handshake_timestamp_seconds", "gauge", "Latest WireGuard handshake with each peer (0: never).")
	for _, st := range sts {
		for _, p := range st.Peers {
			fmt.Fprintf(b, "kubedos_plane_peer_last_handshake_timestamp_seconds{plane=%s,peer=%s} %d\n", promtext.Label(st.Plane), promtext.Label(peerName(p)), unixOrZero(p.LatestHandshake))
		}
	}
	family("kubedos_plane_peer_receive_bytes_total", "counter", "Bytes received from each peer.")
	for _, st := range sts {
		for _, p := range st.Peers {
			fmt.Fprintf(b, "kubedos_plane_peer_receive_bytes_total{plane=%s,peer=%s} %d\n", promtext.Label(st.Plane), promtext.Label(peerName(p)), p.RxBytes)
		}
	}
	family("kubedos_plane_peer_transmit_bytes_total", "counter", "Bytes sent to each peer.")
	for _, st := range sts {
		for _, p := range st.Peers {
			fmt.Fprintf(b, "kubedos_plane_peer_transmit_bytes_total{plane=%s,peer=%s} %d\n", promtext.Label(st.Plane), promtext.Label(peerName(p)), p.TxBytes)
		}
	}
}

// peerName is the peer's node name, or its public key when the node was
// not told of it (a peer someone added by hand).
func peerName(p wg.PeerStatus) string {
	if p.Name == "" {
		return p.PublicKey
	}
	return p.Name
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// logfWriter turns a Logf into the io.Writer a log.Logger wants.
type logfWriter func(string, ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
