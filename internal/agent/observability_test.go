package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// fakeObsHub answers as the hub does: the configuration of the reference
// spec scraping enrolled, and a reader certificate for a CSR.
type fakeObsHub struct {
	t        *testing.T
	ca       *pki.CA
	spec     *spec.ClusterSpec
	now      func() time.Time
	mu       sync.Mutex
	enrolled []string
	csrs     int
	edit     func(*api.ObservabilityResponse)
	err      error
	// kube: the spec runs Kubernetes and the hub holds its CAs.
	kube *pki.KubeCAs
}

func (h *fakeObsHub) Config(_ context.Context, r *api.ObservabilityRequest) (*api.ObservabilityResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return nil, h.err
	}
	files, err := observability.Generate(h.spec, h.enrolled, observability.Options{Kubernetes: h.kube != nil})
	if err != nil {
		h.t.Fatal(err)
	}
	listen, _ := observability.Listen(h.spec)
	res := &api.ObservabilityResponse{Enabled: true, Listen: listen.String(), Files: files, CA: h.ca.CertPEM()}
	life := 6 * time.Hour
	if h.kube != nil {
		res.KubeCA, life = h.kube.Kubernetes.CertPEM(), time.Hour
	}
	if r.CSR != nil {
		h.csrs++
		c, err := h.ca.SignReaderCSR(r.CSR, "prometheus", life, h.now())
		if err != nil {
			return nil, err
		}
		res.Certificate, res.NotAfter = c.Raw, c.NotAfter
		if h.kube != nil {
			k, err := h.kube.SignMonitoring(r.CSR, "prometheus", life, h.now())
			if err != nil {
				return nil, err
			}
			res.KubeCertificate = k.Raw
		}
	}
	if h.edit != nil {
		h.edit(res)
	}
	return res, nil
}

type fakePromUnits struct{ fakeUnits }

func (f *fakePromUnits) DaemonReload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, "daemon-reload")
	return nil
}

func newPromTest(t *testing.T) (*prometheusRunner, *fakeObsHub, *fakePromUnits, *fakeClock, *bool) {
	t.Helper()
	s, err := spec.Parse(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	hub := &fakeObsHub{t: t, ca: newTestCA(t, "obs CA"), spec: spec.WithDefaults(s.Spec), now: clock.Now, enrolled: []string{"master", "prometheus", "w-1"}}
	units := &fakePromUnits{fakeUnits: fakeUnits{active: map[string]bool{}}}
	up := new(bool)
	p := &prometheusRunner{root: t.TempDir(), units: units, clock: clock, every: obsEvery, idle: time.Hour, logf: t.Logf, reported: reported{name: "prometheus", logf: t.Logf},
		hasAddr: func(netip.Addr) bool { return *up },
		owner:   func() (int, int, error) { return -1, -1, nil },
		dial:    func() (observabilityHub, func(), error) { return hub, func() {}, nil }}
	return p, hub, units, clock, up
}

func (p *prometheusRunner) read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(p.obs(rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrometheusRunner(t *testing.T) {
	p, hub, units, clock, up := newPromTest(t)
	ctx := context.Background()

	// The plane is not up yet: everything written, nothing started.
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if a := units.take(); len(a) > 0 || !strings.Contains(p.State(), "waiting for wg-observability") {
		t.Errorf("before the plane: %v, state %q", a, p.State())
	}
	cert, err := readCert(p.obs(observability.FileReaderCert))
	if err != nil || cert.Subject.CommonName != "prometheus@prometheus" {
		t.Fatalf("reader certificate: %v, %v", cert, err)
	}
	if fi, err := os.Stat(p.obs(observability.FileReaderKey)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("reader key: %v, %v; want mode 0640", fi, err)
	}
	if drop, err := os.ReadFile(p.path(PrometheusDropIn)); err != nil || !strings.Contains(string(drop), "--config.file="+observability.DefaultDir) {
		t.Errorf("drop-in: %q, %v", drop, err)
	}
	if !strings.Contains(p.read(t, "targets/kubedosd-w-1.json"), "7445") || strings.Contains(p.read(t, "targets/kubedosd-cp-1.json"), "7445") {
		t.Error("targets: want w-1 scraped, cp-1 (not enrolled) not")
	}

	// The plane up: systemd reads the drop-in, Prometheus starts.
	*up = true
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if a := units.take(); !slices.Equal(a, []string{"daemon-reload", "restart prometheus.service"}) {
		t.Errorf("plane up: %v", a)
	}
	// Nothing changed: nothing done, no new certificate.
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if a := units.take(); len(a) > 0 || hub.csrs != 1 {
		t.Errorf("an idle round: %v, %d CSRs", a, hub.csrs)
	}
	// w-1 revoked at the hub: out of its targets, no reload (Prometheus
	// rereads target files by itself).
	hub.enrolled = []string{"master", "prometheus"}
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if a := units.take(); len(a) > 0 || strings.Contains(p.read(t, "targets/kubedosd-w-1.json"), "7445") {
		t.Errorf("after w-1's revocation: %v, targets %s", a, p.read(t, "targets/kubedosd-w-1.json"))
	}
	// New rules: a reload, not a restart.
	hub.edit = func(r *api.ObservabilityResponse) {
		r.Files[observability.FileRules] = append(r.Files[observability.FileRules], "\n"...)
	}
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if a := units.take(); !slices.Equal(a, []string{"reload prometheus.service"}) {
		t.Errorf("new rules: %v", a)
	}
	// Prometheus stopped: started again.
	units.active[PrometheusUnit] = false
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if a := units.take(); !slices.Equal(a, []string{"restart prometheus.service"}) {
		t.Errorf("stopped: %v", a)
	}
	// Renewal due: a new key and certificate.
	clock.Advance(5 * time.Hour)
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if c2, _ := readCert(p.obs(observability.FileReaderCert)); hub.csrs != 2 || c2 == nil || c2.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Errorf("renewal: %d CSRs", hub.csrs)
	}
	// A key that does not match its certificate (a crash between the two
	// writes): renewed at once.
	if err := os.WriteFile(p.obs(observability.FileReaderKey), []byte(otherKeyPEM(t)), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := p.once(ctx); err != nil || hub.csrs != 3 {
		t.Errorf("mismatched key: %v, %d CSRs", err, hub.csrs)
	}
}

// A hub's answer that would write outside the directory, or a certificate
// for another key, is refused with nothing written.
func TestPrometheusRunnerRefusesHostileAnswers(t *testing.T) {
	for name, edit := range map[string]func(*api.ObservabilityResponse){
		"escaping path":  func(r *api.ObservabilityResponse) { r.Files["targets/../../../../etc/shadow"] = []byte("x") },
		"absolute path":  func(r *api.ObservabilityResponse) { r.Files["/etc/passwd"] = []byte("x") },
		"unknown kind":   func(r *api.ObservabilityResponse) { r.Files["bin/prometheus"] = []byte("x") },
		"huge file":      func(r *api.ObservabilityResponse) { r.Files["targets/x.json"] = make([]byte, maxObsFile+1) },
		"no config":      func(r *api.ObservabilityResponse) { delete(r.Files, observability.FileConfig) },
		"other key cert": func(r *api.ObservabilityResponse) { r.Certificate = otherCertDER(t) },
		"bad listen":     func(r *api.ObservabilityResponse) { r.Listen = "0.0.0.0" },
	} {
		t.Run(name, func(t *testing.T) {
			p, hub, units, _, up := newPromTest(t)
			*up = true
			hub.edit = edit
			if err := p.once(context.Background()); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(p.obs(observability.FileConfig)); err == nil {
				t.Error("the configuration was written")
			}
			if a := units.take(); len(a) > 0 {
				t.Errorf("units touched: %v", a)
			}
		})
	}
}

// A refusal (this node is not the prometheus node, or not enrolled): asked
// again only after idle; a spec without Prometheus likewise, not an error.
func TestPrometheusRunnerBacksOff(t *testing.T) {
	p, hub, _, clock, _ := newPromTest(t)
	hub.err = fmt.Errorf("%w: not a prometheus node", errdefs.ErrPermission)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Run(ctx); err == nil {
		t.Fatal("a refusal is not an error")
	}
	if !p.nextTry.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("next try at %v, want an hour on", p.nextTry)
	}
	hub.err = nil
	hub.edit = func(r *api.ObservabilityResponse) { *r = api.ObservabilityResponse{} }
	p.nextTry = time.Time{}
	if err := p.once(ctx); err != nil || !strings.Contains(p.State(), "runs no Prometheus") {
		t.Errorf("no Prometheus: %v, %q", err, p.State())
	}
}

func otherKeyPEM(t *testing.T) string {
	t.Helper()
	is, err := newTestCA(t, "other").IssueClient("x", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return string(is.KeyPEM)
}

func otherCertDER(t *testing.T) []byte {
	t.Helper()
	is, err := newTestCA(t, "other").IssueClient("x", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return is.Cert.Raw
}

// Node health on the prometheus node says what Prometheus scrapes and what
// fires, from Prometheus's own API.
func TestObservePrometheus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/targets":
			io.WriteString(w, `{"status":"success","data":{"activeTargets":[
				{"labels":{"job":"kubedosd","node":"w-1"},"health":"up"},
				{"labels":{"job":"kubedosd","node":"w-2"},"health":"down"},
				{"labels":{"job":"kubedos-hub"},"health":"up"}]}}`)
		case "/api/v1/query":
			v := "12.3"
			if strings.Contains(r.URL.Query().Get("query"), "process_resident_memory_bytes") {
				v = "87.4"
			}
			io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"`+v+`"]}]}}`)
		case "/api/v1/alerts":
			io.WriteString(w, `{"status":"success","data":{"alerts":[
				{"labels":{"alertname":"KubedosNodeRevokedOrFenced","node":"w-2"},"state":"firing"},
				{"labels":{"alertname":"KubedosDriftDetected","node":"w-1"},"state":"pending"}]}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	got, err := observePrometheus(context.Background(), netip.MustParseAddrPort(srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	if want := "targets up 2/3 (down: kubedosd/w-2); firing: KubedosNodeRevokedOrFenced{node=w-2}; slowest kubedosd scrape 12 ms; Prometheus RSS 87 MiB"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// With Kubernetes, the metrics credential comes for the reader's key and
// is renewed with it; one missing (the hub started sending the Kubernetes
// CA later) is asked for at once; one for another key is refused; a hub
// that stops running Kubernetes leaves neither file behind.
func TestPrometheusRunnerKubeCredential(t *testing.T) {
	p, hub, _, clock, up := newPromTest(t)
	*up = true
	ctx := context.Background()
	if err := p.once(ctx); err != nil || hub.csrs != 1 {
		t.Fatalf("first round: %v, %d CSRs", err, hub.csrs)
	}
	if _, err := os.Stat(p.obs(observability.FileKubeCert)); err == nil {
		t.Fatal("a Kubernetes credential from a hub that runs no Kubernetes")
	}
	cas, err := pki.InitKubeKeys(t.TempDir(), "test", clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	hub.kube = cas
	if err := p.once(ctx); err != nil || hub.csrs != 1 { // the CA arrives
		t.Fatalf("Kubernetes turned on: %v, %d CSRs", err, hub.csrs)
	}
	if err := p.once(ctx); err != nil || hub.csrs != 2 { // the credential is asked for
		t.Fatalf("the credential: %v, %d CSRs", err, hub.csrs)
	}
	reader, _ := readCert(p.obs(observability.FileReaderCert))
	kube, err := readCert(p.obs(observability.FileKubeCert))
	if err != nil || !publicKeysEqual(kube.PublicKey, reader.PublicKey) || kube.Subject.Organization[0] != pki.GroupMonitoring {
		t.Fatalf("credential %v, %v; want system:monitoring for the reader's key", kube, err)
	}
	if !strings.Contains(p.read(t, observability.FileKubeCA), "CERTIFICATE") || !strings.Contains(p.read(t, observability.FileConfig), "job_name: kube-apiserver") {
		t.Error("no Kubernetes CA or API server job written")
	}
	if err := p.once(ctx); err != nil || hub.csrs != 2 {
		t.Errorf("an idle round: %v, %d CSRs", err, hub.csrs)
	}
	clock.Advance(50 * time.Minute) // past RenewAt of the hour
	if err := p.once(ctx); err != nil || hub.csrs != 3 {
		t.Errorf("renewal: %v, %d CSRs", err, hub.csrs)
	}
	// For another key: refused.
	clock.Advance(50 * time.Minute)
	hub.edit = func(r *api.ObservabilityResponse) {
		if r.KubeCertificate != nil {
			r.KubeCertificate = otherCertDER(t)
		}
	}
	if err := p.once(ctx); err == nil || !strings.Contains(err.Error(), "not for the key") {
		t.Errorf("a credential for another key: %v", err)
	}
	hub.edit, hub.kube = nil, nil
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{observability.FileKubeCA, observability.FileKubeCert} {
		if _, err := os.Stat(p.obs(f)); err == nil {
			t.Errorf("%s left once the hub runs no Kubernetes", f)
		}
	}
}
