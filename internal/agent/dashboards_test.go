package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

type fakeDashHub struct{ res *api.ObservabilityResponse }

func (f fakeDashHub) Config(context.Context, *api.ObservabilityRequest) (*api.ObservabilityResponse, error) {
	return f.res, nil
}

// The node the hub names serves the dashboards from Prometheus to readers
// only; the other waits.
func TestDashboardsServer(t *testing.T) {
	// A Prometheus answering every query with 4 enrolled nodes.
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "query_range") {
			io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
			return
		}
		io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"4"]}]}}`)
	}))
	defer prom.Close()
	e := newNodeEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	hub := fakeDashHub{&api.ObservabilityResponse{Enabled: true, Dashboards: true, Cluster: "local",
		Listen: strings.TrimPrefix(prom.URL, "http://")}}
	d := &dashboardsServer{node: e.api, addr: addr, clock: newFakeClock(), every: time.Second, idle: time.Hour, logf: t.Logf, reported: reported{name: "dashboards", logf: t.Logf},
		dial: func() (observabilityHub, func(), error) { return hub, func() {}, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	url := "https://" + addr + "/fleet"
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body, err = scrape(t, e, url, clientCert(t, e.ca, "rita", pki.RoleReader)); err == nil {
			break
		}
	}
	if code != http.StatusOK || !strings.Contains(body, "local") || !strings.Contains(body, ">4<") {
		t.Errorf("a reader: %d, %v\n%.600s", code, err, body)
	}
	if !strings.Contains(d.State(), "serving https://") {
		t.Errorf("state %q", d.State())
	}
	if _, _, err := scrape(t, e, url, nil); err == nil {
		t.Error("served without a client certificate")
	}
	other := newTestCA(t, "another CA")
	if _, _, err := scrape(t, e, url, clientCert(t, other, "mallory", pki.RoleAdmin)); err == nil {
		t.Error("served to another CA's certificate")
	}
}

// Not this node's to serve (the spec has a grafana node): it waits.
func TestDashboardsServerWaits(t *testing.T) {
	e := newNodeEnv(t)
	clock := newFakeClock()
	hub := fakeDashHub{&api.ObservabilityResponse{Enabled: true, Listen: "10.78.0.30:9090"}}
	d := &dashboardsServer{node: e.api, addr: "127.0.0.1:0", clock: clock, every: time.Second, idle: time.Hour, logf: t.Logf, reported: reported{name: "dashboards", logf: t.Logf},
		dial: func() (observabilityHub, func(), error) { return hub, func() {}, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-clock.parked
	if !strings.Contains(d.State(), "the grafana node serves the dashboards") {
		t.Errorf("state %q", d.State())
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
