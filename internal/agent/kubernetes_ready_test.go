package agent

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
)

// kubedosd asks the API server, as the node's kubelet, for its own Node's
// Ready condition; the metrics carry it.
func TestNodeReady(t *testing.T) {
	ca := newTestCA(t, "kubernetes test CA")
	var ready atomic.Value
	ready.Store("True")
	apiSrv := mtlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "system:node:w-1" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if r.URL.Path != "/api/v1/nodes/w-1" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"kind":"Node","status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"`+ready.Load().(string)+`"}]}}`)
	}))

	plan := kubeTestPlan(t, "w-1")
	plan.APIServer = apiSrv.URL
	k, _, _ := newTestRunner(t, plan)
	if r := k.NodeReady(context.Background()); !r.Known || r.Err == nil {
		t.Errorf("without the kubelet's certificate: %+v, want known and an error", r)
	}
	kubelet, err := ca.IssueClient("system:node:w-1", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pkiFile := func(name string) string { return path.Join(kubeplan.PKIDir, name) }
	writeTestFile(t, k.root, pkiFile("kubelet-client.crt"), kubelet.CertPEM)
	writeTestFile(t, k.root, pkiFile("kubelet-client.key"), kubelet.KeyPEM)
	writeTestFile(t, k.root, pkiFile("ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}))
	if r := k.NodeReady(context.Background()); !r.Known || !r.Ready || r.Err != nil {
		t.Errorf("a Ready node: %+v", r)
	}
	ready.Store("False")
	if r := k.NodeReady(context.Background()); !r.Known || r.Ready || r.Err != nil {
		t.Errorf("a NotReady node: %+v", r)
	}
	// A node that runs no kubelet says nothing.
	cp, _, _ := newTestRunner(t, kubeTestPlan(t, "cp-1"))
	if r := cp.NodeReady(context.Background()); r.Known {
		t.Errorf("control plane without a kubelet: %+v", r)
	}

	// In the metrics.
	e := newNodeEnv(t)
	var asked atomic.Int32
	e.api.cfg.KubeReady = func(ctx context.Context) KubeReadiness { asked.Add(1); return k.NodeReady(ctx) }
	var b strings.Builder
	if err := e.api.WriteMetrics(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("a scrape asked the API server about the Node %d times, want once (health and the metrics share it)", n)
	}
	if !strings.Contains(b.String(), `kubedos_health_check{check="kubelet",critical="false"} 0`) {
		t.Errorf("metrics lack the kubelet health check:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "kubedos_kubernetes_node_ready 0\n") || !strings.Contains(b.String(), "kubedos_kubernetes_api_reachable 1\n") {
		t.Errorf("metrics lack the NotReady node:\n%s", b.String())
	}
	checkMetricsText(t, b.String())

	// And in node health, reported only: a NotReady Node does not make the
	// node unhealthy (its boot is still marked good), a Ready one is OK, a
	// node without a kubelet has no such check.
	kubeletCheck := func(h *api.Health) (api.HealthCheck, bool) {
		i := slices.IndexFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "kubelet" })
		if i < 0 {
			return api.HealthCheck{}, false
		}
		return h.Checks[i], true
	}
	if c, ok := kubeletCheck(ptr(e.api.CheckHealth(context.Background()))); !ok || c.OK || c.Critical || !strings.Contains(c.Detail, "not Ready") {
		t.Errorf("a NotReady node's kubelet check: %+v (%v)", c, ok)
	}
	ready.Store("True")
	if c, ok := kubeletCheck(ptr(e.api.CheckHealth(context.Background()))); !ok || !c.OK {
		t.Errorf("a Ready node's kubelet check: %+v (%v)", c, ok)
	}
	e.api.cfg.KubeReady = cp.NodeReady
	if c, ok := kubeletCheck(ptr(e.api.CheckHealth(context.Background()))); ok {
		t.Errorf("a node without a kubelet has a kubelet check: %+v", c)
	}
}

// mtlsServer serves h on loopback over TLS with a certificate of ca,
// requiring a client certificate of ca; closed when the test ends.
func mtlsServer(t *testing.T, ca *pki.CA, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	cert, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := cert.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func ptr[T any](v T) *T { return &v }
