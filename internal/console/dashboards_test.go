package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/dashboards"
	"github.com/kubedos/kubedos/internal/pki"
)

// fakePrometheus answers the fleet dashboard's node count with 7 and every
// other query with no data, recording the queries it was asked.
func fakePrometheus(t *testing.T) (*httptest.Server, func() int) {
	t.Helper()
	nodes := ""
	for _, p := range dashboards.Builtin()[0].Panels {
		if p.ID == "nodes" {
			nodes = p.Queries[0].Expr
		}
	}
	var mu sync.Mutex
	asked := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		mu.Lock()
		asked++
		mu.Unlock()
		body := map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": []any{}}}
		if strings.HasSuffix(r.URL.Path, "/api/v1/query") {
			result := []any{}
			if q == nodes {
				result = append(result, map[string]any{"metric": map[string]string{}, "value": []any{1767225600, "7"}})
			}
			body["data"] = map[string]any{"resultType": "vector", "result": result}
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() int {
		mu.Lock()
		defer mu.Unlock()
		return asked
	}
}

func TestDashboardsMounted(t *testing.T) {
	prom, asked := fakePrometheus(t)
	b := startHub(t).consoleWith(t, pki.RoleReader, func(c *Config) { c.Prometheus = prom.URL })

	// Behind the login like every page: no session, no query reaches Prometheus.
	anon := b.srv.Client()
	for _, path := range []string{"/dashboards/", "/dashboards/fleet", "/dashboards/static/dash.css"} {
		res, err := anon.Get(b.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session = %d, want 401", path, res.StatusCode)
		}
	}
	if asked() != 0 {
		t.Errorf("Prometheus was asked %d queries for a browser without a session", asked())
	}

	if _, body := b.get(t, "/"); !strings.Contains(body, `<a href="/dashboards/">Dashboards</a>`) {
		t.Error("the console's nav has no link to the dashboards")
	}
	code, body := b.get(t, "/dashboards/")
	if code != http.StatusOK || !strings.Contains(body, `<a href="fleet">Fleet attestation</a>`) || !strings.Contains(body, `<a href="/">Console</a>`) {
		t.Errorf("GET /dashboards/ = %d:\n%s", code, body)
	}
	code, body = b.get(t, "/dashboards/fleet")
	if code != http.StatusOK || !strings.Contains(body, `<span class="stat-value">7</span>`) || !strings.Contains(body, "cluster <b>test</b>") {
		t.Errorf("GET /dashboards/fleet = %d:\n%s", code, body)
	}
	if asked() == 0 {
		t.Error("the fleet page asked Prometheus nothing")
	}
	if code, body := b.get(t, "/dashboards/static/dash.css"); code != http.StatusOK || !strings.Contains(body, "svg.chart") {
		t.Errorf("the dashboards' stylesheet = %d", code)
	}
	res, err := b.cl.Get(b.srv.URL + "/dashboards")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode/100 != 3 || loc != "/dashboards/" {
		t.Errorf("GET /dashboards = %d to %q, want a redirect to /dashboards/", res.StatusCode, loc)
	}
}

func TestDashboardsOff(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleReader)
	if _, body := b.get(t, "/"); strings.Contains(body, "/dashboards/") {
		t.Error("a dashboards link without a Prometheus")
	}
	if code, _ := b.get(t, "/dashboards/"); code != http.StatusNotFound {
		t.Errorf("GET /dashboards/ without a Prometheus = %d, want 404", code)
	}
	_, err := New(Config{Hub: fakeHub{}, Cert: readerCert(), Prometheus: "prometheus:9090"})
	if err == nil || !strings.Contains(err.Error(), `prometheus URL "prometheus:9090"`) {
		t.Errorf("a Prometheus URL without a scheme: %v", err)
	}
}
