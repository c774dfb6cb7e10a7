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
	giveKubeletCert(t, k, ca, "w-1")
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

// giveKubeletCert writes node's kubelet client certificate and key of ca,
// and ca as the Kubernetes CA, where k reads them.
func giveKubeletCert(t *testing.T, k *kubeRunner, ca *pki.CA, node string) {
	t.Helper()
	kubelet, err := ca.IssueClient("system:node:"+node, pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pkiFile := func(name string) string { return path.Join(kubeplan.PKIDir, name) }
	writeTestFile(t, k.root, pkiFile("kubelet-client.crt"), kubelet.CertPEM)
	writeTestFile(t, k.root, pkiFile("kubelet-client.key"), kubelet.KeyPEM)
	writeTestFile(t, k.root, pkiFile("ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}))
}

// A kubelet node lists its own pods (the Node authorizer's field
// selector), keeps the running and starting ones, and reports them in
// node health only when asked.
func TestNodePods(t *testing.T) {
	ca := newTestCA(t, "kubernetes test CA")
	var body atomic.Value
	body.Store(`{"kind":"PodList","items":[
{"metadata":{"namespace":"kube-system","name":"coredns-1"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}},
{"metadata":{"namespace":"kubedos-probe","name":"probe-1"},"status":{"phase":"Running","conditions":[{"type":"PodScheduled","status":"True"},{"type":"Ready","status":"False"}]}},
{"metadata":{"namespace":"default","name":"starting"},"status":{"phase":"Pending"}},
{"metadata":{"namespace":"default","name":"done"},"status":{"phase":"Succeeded","conditions":[{"type":"Ready","status":"False"}]}},
{"metadata":{"namespace":"default","name":"crashed"},"status":{"phase":"Failed"}},
{"metadata":{"namespace":"default","name":"going","deletionTimestamp":"2026-12-08T00:00:00Z"},"status":{"phase":"Running"}}]}`)
	apiSrv := mtlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS.PeerCertificates[0].Subject.CommonName != "system:node:w-1" || r.URL.Path != "/api/v1/pods" ||
			r.URL.Query().Get("fieldSelector") != "spec.nodeName=w-1" {
			http.Error(w, "forbidden: a node lists only its own pods", http.StatusForbidden)
			return
		}
		io.WriteString(w, body.Load().(string))
	}))
	plan := kubeTestPlan(t, "w-1")
	plan.APIServer = apiSrv.URL
	k, _, _ := newTestRunner(t, plan)
	giveKubeletCert(t, k, ca, "w-1")
	pods, err := k.NodePods(context.Background())
	want := []api.PodReadiness{{Name: "kube-system/coredns-1", Ready: true}, {Name: "kubedos-probe/probe-1"}, {Name: "default/starting"}}
	if err != nil || !slices.Equal(pods, want) {
		t.Errorf("pods %+v, %v; want %+v", pods, err, want)
	}
	cp, _, _ := newTestRunner(t, kubeTestPlan(t, "cp-1"))
	if pods, err := cp.NodePods(context.Background()); pods != nil || err != nil {
		t.Errorf("a node without a kubelet: %+v, %v", pods, err)
	}

	// Health: no pods unless asked; asked, a "pods" check naming the
	// ones not Ready, reported only.
	e := newNodeEnv(t)
	e.api.cfg.KubePods = k.NodePods
	svc := nodeService{e.api}
	h, _ := svc.Health(context.Background(), &api.HealthRequest{})
	if h.Pods != nil || slices.ContainsFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "pods" }) {
		t.Errorf("pods reported without being asked: %+v", h)
	}
	h, _ = svc.Health(context.Background(), &api.HealthRequest{Pods: true})
	i := slices.IndexFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "pods" })
	if !slices.Equal(h.Pods, want) || i < 0 || h.Checks[i].OK || h.Checks[i].Critical ||
		h.Checks[i].Detail != "2 of 3 pods not Ready: kubedos-probe/probe-1, default/starting" {
		t.Errorf("health with pods: %+v", h)
	}
	body.Store(`{"items":[{"metadata":{"namespace":"a","name":"b"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}]}`)
	h, _ = svc.Health(context.Background(), &api.HealthRequest{Pods: true})
	if i := slices.IndexFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "pods" }); i < 0 || !h.Checks[i].OK ||
		h.Checks[i].Detail != "all 1 pods on the node Ready" {
		t.Errorf("health with every pod Ready: %+v", h.Checks)
	}
	// An API server that answers garbage, or too many pods: the check
	// fails, saying so.
	body.Store(`{"items":[`)
	h, _ = svc.Health(context.Background(), &api.HealthRequest{Pods: true})
	if i := slices.IndexFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "pods" }); i < 0 || h.Checks[i].OK ||
		!strings.Contains(h.Checks[i].Detail, "pod list") {
		t.Errorf("health with a broken pod list: %+v", h.Checks)
	}
	var many strings.Builder
	many.WriteString(`{"items":[`)
	for j := range maxPods + 5 {
		if j > 0 {
			many.WriteString(",")
		}
		many.WriteString(`{"metadata":{"namespace":"n","name":"p` + strings.Repeat("x", 300) + `"},"status":{"phase":"Running"}}`)
	}
	many.WriteString("]}")
	body.Store(many.String())
	h, _ = svc.Health(context.Background(), &api.HealthRequest{Pods: true})
	if len(h.Pods) != maxPods || len(h.Pods[0].Name) != 2+253 {
		t.Errorf("%d pods kept, the first named in %d bytes; want %d, 255", len(h.Pods), len(h.Pods[0].Name), maxPods)
	}
	if i := slices.IndexFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "pods" }); i < 0 || !strings.Contains(h.Checks[i].Detail, "more than 256 pods") {
		t.Errorf("health with too many pods: %+v", h.Checks)
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
