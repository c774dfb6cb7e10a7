//go:build integration

package dashboards

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/observability/promtest"
	"github.com/kubedos/kubedos/internal/promtext"
)

// The fleet the exporters below report: 5 enrolled, one pending, one
// quarantined under a name a node chose to attack the page, one revoked.
var fleet = []struct{ name, state string }{
	{"w-1", "enrolled"}, {"w-2", "enrolled"}, {"w-3", "enrolled"}, {"w-4", "enrolled"}, {"w-5", "enrolled"},
	{"w-6", "pending"}, {evil, "quarantined"}, {"w-8", "revoked"},
}

// hubMetrics is what the hub serves about fleet, its counters growing with
// time so rates and quantiles have something to show.
func hubMetrics(start time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		n := int(time.Since(start)/time.Second) + 1
		by := map[string]int{}
		for _, f := range fleet {
			by[f.state]++
			fmt.Fprintf(w, "kubedos_hub_node_state{node=%s,role=\"worker\",state=%s} 1\n", promtext.Label(f.name), promtext.Label(f.state))
		}
		for _, st := range []string{"pending", "enrolled", "quarantined", "revoked", "fenced", "replaced"} {
			fmt.Fprintf(w, "kubedos_hub_nodes{state=%q} %d\n", st, by[st])
		}
		fmt.Fprintf(w, "kubedos_hub_node_upgrade_pending{node=\"w-3\",target=\"b2\"} 1\n")
		fmt.Fprintf(w, "kubedos_hub_refusals_total{check=\"pcr-policy\"} %d\n", n/5)
		fmt.Fprintf(w, "kubedos_hub_refused_total{reason=\"rate-limit\"} %d\n", n)
		fmt.Fprintf(w, "kubedos_hub_enrollments_total{kind=\"renew\",outcome=\"enrolled\"} %d\n", n)
		fmt.Fprintf(w, "kubedos_hub_plane_joins_total %d\n", 3*n)
		// Verifications of 40 ms, a few of 200 ms.
		for _, b := range []struct {
			le string
			c  int
		}{{"0.01", 0}, {"0.05", 4 * n}, {"0.25", 5 * n}, {"1", 5 * n}, {"+Inf", 5 * n}} {
			fmt.Fprintf(w, "kubedos_hub_evidence_verification_seconds_bucket{le=%q} %d\n", b.le, b.c)
		}
		fmt.Fprintf(w, "kubedos_hub_evidence_verification_seconds_sum %g\nkubedos_hub_evidence_verification_seconds_count %d\n", 0.36*float64(n), 5*n)
	}
}

// nodeMetrics is the enrolled nodes' kubedosd series, labelled with their
// node as the generated configuration's target labels do.
func nodeMetrics(w http.ResponseWriter, _ *http.Request) {
	now := time.Now().Unix()
	for i, f := range fleet[:5] {
		build := "b1"
		if f.name == "w-5" {
			build = "b2"
		}
		fmt.Fprintf(w, "kubedos_node_info{node=%q,role=\"worker\",build=%q,slot=\"a\"} 1\n", f.name, build)
		drift := 0
		if f.name == "w-2" {
			drift = 2
		}
		fmt.Fprintf(w, "kubedos_drift_items{node=%q,kind=\"files\"} %d\n", f.name, drift)
		fmt.Fprintf(w, "kubedos_drift_detected_total{node=%q} %d\n", f.name, drift)
		fmt.Fprintf(w, "kubedos_plane_up{node=%q,plane=\"observability\",interface=\"wg-observability\"} 1\n", f.name)
		fmt.Fprintf(w, "kubedos_plane_peer_last_handshake_timestamp_seconds{node=%q,plane=\"observability\",peer=\"master\"} %d\n", f.name, now-int64(20+10*i))
		fmt.Fprintf(w, "kubedos_plane_peer_receive_bytes_total{node=%q,plane=\"observability\",peer=\"master\"} %d\n", f.name, now*1000)
	}
	fmt.Fprintf(w, "kubedos_plane_peer_last_handshake_timestamp_seconds{node=\"w-1\",plane=\"observability\",peer=\"w-6\"} 0\n")
}

// backfill writes two hours of the hub's node counts before now into
// Prometheus's database, as if it had scraped them: the fleet chart has a
// history to draw. The series carry the live target's labels, so the
// chart's line continues into what is scraped.
func backfill(t *testing.T, data, instance string, now time.Time) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	var b strings.Builder
	b.WriteString("# TYPE kubedos_hub_nodes gauge\n")
	start := now.Add(-2 * time.Hour).Truncate(time.Minute)
	for _, st := range []string{"enrolled", "quarantined", "revoked"} {
		for ts := start; ts.Before(now.Add(-time.Minute)); ts = ts.Add(time.Minute) {
			m := int(ts.Sub(start) / time.Minute) // minutes into the history
			v := 0
			switch st {
			case "enrolled": // nodes enrolling one every 20 minutes
				v = min(5, 1+m/20)
			case "quarantined":
				if m >= 70 {
					v = 1
				}
			case "revoked":
				if m >= 95 {
					v = 1
				}
			}
			fmt.Fprintf(&b, "kubedos_hub_nodes{instance=%q,job=%q,state=%q} %d %d\n", instance, observability.JobHub, st, v, ts.Unix())
		}
	}
	b.WriteString("# EOF\n")
	in := filepath.Join(t.TempDir(), "history.om")
	if err := os.WriteFile(in, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", in, data).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
}

// TestPrometheus serves the dashboards from Debian's prometheus scraping
// two exporters of the fleet above: every query of every dashboard runs on
// the real PromQL engine, and the pages show what was scraped.
func TestPrometheus(t *testing.T) {
	hubSrv := httptest.NewServer(hubMetrics(time.Now()))
	defer hubSrv.Close()
	nodeSrv := httptest.NewServer(http.HandlerFunc(nodeMetrics))
	defer nodeSrv.Close()
	hubAddr, nodeAddr := strings.TrimPrefix(hubSrv.URL, "http://"), strings.TrimPrefix(nodeSrv.URL, "http://")

	dir := t.TempDir()
	backfill(t, filepath.Join(dir, "data"), hubAddr, time.Now())
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: %s
    static_configs: [{targets: [%q]}]
  - job_name: %s
    honor_labels: true
    static_configs: [{targets: [%q]}]
`, observability.JobHub, hubAddr, observability.JobKubedosd, nodeAddr)
	if err := os.WriteFile(filepath.Join(dir, observability.FileConfig), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := promtest.Start(t, dir)
	// Three scrapes of each, so rates exist.
	prom.WaitFor(t, `count_over_time(kubedos_hub_plane_joins_total[1m]) >= bool 3`, "1", 60*time.Second)
	prom.WaitFor(t, `count_over_time(kubedos_plane_peer_receive_bytes_total{node="w-5"}[1m]) >= bool 3`, "1", 30*time.Second)

	c, err := NewClient(prom.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(c, Options{Cluster: "lab"}))
	defer srv.Close()

	pages := map[string]string{}
	for _, d := range Builtin() {
		res, err := http.Get(srv.URL + "/" + d.Name)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		page := string(body)
		pages[d.Name] = page
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", d.Name, res.StatusCode)
		}
		// Every builtin query is PromQL this Prometheus runs.
		if n := strings.Count(page, `class="panel-error"`); n > 0 {
			t.Errorf("%s: %d panels failed:\n%s", d.Name, n, page)
		}
	}
	stat := func(board, panel string) string {
		t.Helper()
		sec := panelHTML(t, pages[board], panel)
		i := strings.Index(sec, `<span class="stat-value">`)
		if i < 0 {
			return "(no value: " + sec + ")"
		}
		v := sec[i+len(`<span class="stat-value">`):]
		return v[:strings.Index(v, "<")]
	}
	for _, tt := range []struct{ board, panel, want string }{
		{"fleet", "nodes", fmt.Sprint(len(fleet))},
		{"fleet", "enrolled", "5"},
		{"fleet", "quarantined", "1"},
		{"fleet", "revoked", "1"},
		{"upgrades", "pending", "1"},
		{"upgrades", "not-attested", "0"},
		{"drift", "drifted", "1"},
		{"planes", "down", "0"},
		{"planes", "stale", "1"}, // the peer never handshaken
	} {
		if got := stat(tt.board, tt.panel); got != tt.want {
			t.Errorf("%s/%s shows %s, want %s", tt.board, tt.panel, got, tt.want)
		}
	}
	if got := stat("hub", "p90"); !strings.HasSuffix(got, " ms") {
		t.Errorf("hub p90 shows %q, want milliseconds", got)
	}
	// The history drawn: the backfilled hours and the live scrapes.
	states := panelHTML(t, pages["fleet"], "states")
	for _, want := range []string{"</span>enrolled <span class=\"last\">5</span>", "</span>quarantined <span", "</span>revoked <span", "</span>pending <span"} {
		if !strings.Contains(states, want) {
			t.Errorf("fleet states chart lacks %q:\n%s", want, states)
		}
	}
	if got := panelHTML(t, pages["fleet"], "not-enrolled"); !strings.Contains(got, "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;") {
		t.Errorf("the quarantined node's name is not shown escaped:\n%s", got)
	}
	for _, id := range []string{"targets-down", "up-by-job", "targets"} {
		if got := panelHTML(t, pages["kubernetes"], id); !strings.Contains(got, "no data: no Kubernetes or etcd target is scraped") {
			t.Errorf("kubernetes/%s without targets:\n%s", id, got)
		}
	}
	if got := panelHTML(t, pages["upgrades"], "node-builds"); !strings.Contains(got, "<td>w-5</td><td>worker</td><td>b2</td><td>a</td><td>1</td>") {
		t.Errorf("upgrades/node-builds:\n%s", got)
	}

	browse(t, srv.URL)
}

// browse opens the fleet page in headless Chromium, as the console's
// browser test does: the charts are SVG the browser parsed as such, the
// node's name is text, and a screenshot is kept.
func browse(t *testing.T, base string) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed (apt-get install chromium): the browser check is skipped")
	}
	dir := t.ArtifactDir()
	if a := os.Getenv("KUBEDOS_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "dashboards")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
			"--user-data-dir=" + t.TempDir(), "--window-size=1280,2000"}
		if os.Geteuid() == 0 {
			base = append(base, "--no-sandbox") // Chromium refuses to run as root with its sandbox
		}
		out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	fleetURL := base + "/fleet?" + url.Values{"range": {"6h"}}.Encode()
	dom := run("--dump-dom", fleetURL)
	if n := strings.Count(dom, `<path class="series `); n < 4 {
		t.Errorf("the browser's DOM has %d chart lines, want at least 4:\n%s", n, dom)
	}
	if !strings.Contains(dom, `<span class="stat-value">8</span>`) {
		t.Errorf("the browser does not show the node count 8")
	}
	if strings.Contains(dom, "<script") {
		t.Errorf("a script element in the browser's DOM:\n%s", dom)
	}
	shot := filepath.Join(dir, "fleet.png")
	run("--screenshot="+shot, fleetURL)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot %s: %v", shot, err)
	}
	for _, name := range []string{"upgrades", "drift", "planes", "hub", "kubernetes"} {
		run("--screenshot="+filepath.Join(dir, name+".png"), base+"/"+name)
	}
	t.Logf("screenshots in %s", dir)
}
