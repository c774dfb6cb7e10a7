package dashboards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake answers each expression with its series or error, the same for an
// instant and a range query; an expression it does not know has no data.
type fake struct {
	mu     sync.Mutex
	series map[string][]Series
	errs   map[string]error
	ranges []string // range queries asked, for the step check
}

func (f *fake) Query(_ context.Context, q string, _ time.Time) ([]Series, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.series[q], f.errs[q]
}

func (f *fake) QueryRange(_ context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, fmt.Sprintf("%s %s", end.Sub(start), step))
	return f.series[q], f.errs[q]
}

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// line is a series of values one minute apart, ending at now.
func line(labels map[string]string, vals ...float64) Series {
	s := Series{Labels: labels}
	for i, v := range vals {
		s.Points = append(s.Points, Point{T: now.Add(time.Duration(i-len(vals)+1) * time.Minute), V: v})
	}
	return s
}

// expr finds a builtin panel's first query.
func expr(t *testing.T, board, panel string) string {
	t.Helper()
	for _, d := range Builtin() {
		for _, p := range d.Panels {
			if d.Name == board && p.ID == panel {
				return p.Queries[0].Expr
			}
		}
	}
	t.Fatalf("no panel %s/%s", board, panel)
	return ""
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

// panelHTML is the section of one panel.
func panelHTML(t *testing.T, page, id string) string {
	t.Helper()
	start := strings.Index(page, `<section class="panel `)
	for start >= 0 {
		end := strings.Index(page[start:], "</section>")
		sec := page[start : start+end]
		if strings.Contains(sec, ` id="`+id+`"`) {
			return sec
		}
		next := strings.Index(page[start+end:], `<section class="panel `)
		if next < 0 {
			break
		}
		start += end + next
	}
	t.Fatalf("no panel %q in:\n%s", id, page)
	return ""
}

const evil = `<script>alert("pwned")</script>`

func TestFleetPage(t *testing.T) {
	f := &fake{series: map[string][]Series{
		expr(t, "fleet", "nodes"):    {line(nil, 5)},
		expr(t, "fleet", "enrolled"): {line(nil, 3)},
		expr(t, "fleet", "states"): {
			line(map[string]string{"state": "enrolled"}, 1, 2, 3),
			line(map[string]string{"state": "quarantined"}, 0, 1, 1),
		},
		expr(t, "fleet", "not-enrolled"): {
			{Labels: map[string]string{"node": evil, "role": "worker", "state": "quarantined"}, Points: []Point{{now, 1}}},
			{Labels: map[string]string{"node": "w-2", "role": "worker", "state": "revoked"}, Points: []Point{{now, 1}}},
		},
		expr(t, "fleet", "refusals"): {line(map[string]string{"check": evil}, 0, 2)},
	}, errs: map[string]error{
		expr(t, "fleet", "edge"): errors.New(`prometheus query "x": HTTP 422: execution: <b>boom</b>`),
	}}
	h := New(f, Options{Cluster: "lab", Now: func() time.Time { return now }})
	code, page := get(t, h, "/fleet")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got := panelHTML(t, page, "nodes"); !strings.Contains(got, `<span class="stat-value">5</span>`) {
		t.Errorf("node count:\n%s", got)
	}
	if got := panelHTML(t, page, "enrolled"); !strings.Contains(got, `<span class="stat-value">3</span>`) {
		t.Errorf("enrolled:\n%s", got)
	}
	// No data is said, with what it means here.
	if got := panelHTML(t, page, "quarantined"); !strings.Contains(got, `<p class="nodata">no data: the hub is not scraped</p>`) {
		t.Errorf("quarantined without data:\n%s", got)
	}
	// A query error stays in its panel, escaped; the others are drawn.
	if got := panelHTML(t, page, "edge"); !strings.Contains(got, `class="panel-error"`) || !strings.Contains(got, `&lt;b&gt;boom&lt;/b&gt;`) {
		t.Errorf("edge panel's error:\n%s", got)
	}
	if strings.Count(page, `class="panel-error"`) != 1 {
		t.Errorf("%d panel errors, want 1", strings.Count(page, `class="panel-error"`))
	}
	states := panelHTML(t, page, "states")
	if n := strings.Count(states, `<path class="series `); n != 2 {
		t.Errorf("states chart: %d lines, want 2:\n%s", n, states)
	}
	for _, want := range []string{`<svg xmlns="http://www.w3.org/2000/svg" class="chart"`, `<span class="swatch"></span>enrolled <span class="last">3</span>`, `<text class="x"`, `<text class="y"`} {
		if !strings.Contains(states, want) {
			t.Errorf("states chart lacks %q:\n%s", want, states)
		}
	}
	// The label a node chose is text everywhere: legend, tooltip, table cell.
	if strings.Contains(page, "<script>") {
		t.Errorf("an unescaped script element in the page")
	}
	table := panelHTML(t, page, "not-enrolled")
	if !strings.Contains(table, `<td>&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;</td><td>worker</td><td>quarantined</td><td>1</td>`) {
		t.Errorf("table row of the evil node:\n%s", table)
	}
	if !strings.Contains(table, `<th>node</th><th>role</th><th>state</th><th>value</th>`) {
		t.Errorf("table columns:\n%s", table)
	}
	if !strings.Contains(panelHTML(t, page, "refusals"), `<title>&lt;script&gt;`) {
		t.Errorf("the refusals chart's tooltip is not escaped text")
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="30">`, `<link rel="stylesheet" href="static/dash.css">`, `cluster <b>lab</b>`, `<b>6h</b>`, `href="fleet?range=1h"`, "2026-12-07 12:00:00 UTC"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// 6 h in 240 steps of 90 s.
	for _, r := range f.ranges {
		if r != "6h0m0s 1m30s" {
			t.Errorf("range query %s, want 6h0m0s 1m30s", r)
		}
	}
}

func TestChartBoundsSeries(t *testing.T) {
	var many []Series
	for i := range 30 {
		many = append(many, line(map[string]string{"node": fmt.Sprintf("n-%02d", i)}, float64(i), float64(i)))
	}
	var rows []Series
	for i := range MaxRows + 50 {
		rows = append(rows, Series{Labels: map[string]string{"node": fmt.Sprintf("n-%03d", i), "kind": strings.Repeat("k", 1000)}, Points: []Point{{now, 1}}})
	}
	f := &fake{series: map[string][]Series{expr(t, "drift", "items"): many, expr(t, "drift", "drift-now"): rows}}
	_, page := get(t, New(f, Options{Now: func() time.Time { return now }}), "/drift?range=1h")
	chart := panelHTML(t, page, "items")
	if n := strings.Count(chart, `<path class="series `); n != MaxSeries {
		t.Errorf("%d lines drawn, want %d", n, MaxSeries)
	}
	// The highest peaks are the ones drawn.
	if !strings.Contains(chart, `<span class="swatch"></span>n-29 `) || strings.Contains(chart, `n-17 `) {
		t.Errorf("not the highest series drawn:\n%s", chart)
	}
	if !strings.Contains(chart, "18 more series not drawn") {
		t.Errorf("the chart does not say what it left out:\n%s", chart)
	}
	table := panelHTML(t, page, "drift-now")
	if n := strings.Count(table, "<tr>"); n != MaxRows+1 {
		t.Errorf("%d table rows, want %d and the header", n-1, MaxRows)
	}
	if !strings.Contains(table, "50 more rows not shown") || strings.Contains(table, strings.Repeat("k", maxCell+1)) {
		t.Errorf("table not bounded")
	}
	if f.ranges[0] != "1h0m0s 15s" {
		t.Errorf("1h range as %s", f.ranges[0])
	}
}

func TestEmptyDashboards(t *testing.T) {
	h := New(&fake{}, Options{Now: func() time.Time { return now }, Refresh: -1})
	for _, d := range Builtin() {
		code, page := get(t, h, "/"+d.Name)
		if code != http.StatusOK {
			t.Errorf("%s: status %d", d.Name, code)
		}
		if got, want := strings.Count(page, `<p class="nodata">no data`), len(d.Panels); got != want {
			t.Errorf("%s: %d panels say no data, want all %d", d.Name, got, want)
		}
		if strings.Contains(page, "http-equiv") {
			t.Errorf("%s reloads itself with Refresh < 0", d.Name)
		}
	}
	_, page := get(t, h, "/kubernetes")
	if !strings.Contains(panelHTML(t, page, "targets"), "no data: no Kubernetes or etcd target is scraped") {
		t.Error("the Kubernetes page does not say no target is scraped")
	}
}

func TestIndexAndErrors(t *testing.T) {
	h := New(&fake{}, Options{Home: "/", Now: func() time.Time { return now }})
	code, page := get(t, h, "/")
	if code != http.StatusOK {
		t.Fatalf("index: %d", code)
	}
	for _, d := range Builtin() {
		if !strings.Contains(page, `<li><a href="`+d.Name+`">`+d.Title+`</a>`) {
			t.Errorf("index lacks %s", d.Name)
		}
	}
	if !strings.Contains(page, `<a href="/">Console</a>`) {
		t.Error("no link home")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q", csp)
	}
	if code, page := get(t, h, "/nope"); code != http.StatusNotFound || !strings.Contains(page, "No dashboard nope.") {
		t.Errorf("unknown dashboard: %d", code)
	}
	if code, page := get(t, h, "/fleet?range=%3Cx%3E"); code != http.StatusBadRequest || !strings.Contains(page, `range &#34;&lt;x&gt;&#34;`) {
		t.Errorf("bad range: %d\n%s", code, page)
	}
	if code, body := get(t, h, "/static/dash.css"); code != http.StatusOK || !strings.Contains(body, "svg.chart") {
		t.Errorf("stylesheet: %d", code)
	}
}

// A Prometheus slower than the page's timeout: every panel says so, and
// the page still comes back.
func TestTimeout(t *testing.T) {
	h := New(slow{}, Options{Timeout: 50 * time.Millisecond})
	start := time.Now()
	code, page := get(t, h, "/hub")
	if code != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Fatalf("status %d after %s", code, time.Since(start))
	}
	if n := strings.Count(page, `class="panel-error"`); n != len(Builtin()[4].Panels) || !strings.Contains(page, "context deadline exceeded") {
		t.Errorf("%d panels with an error:\n%s", n, page)
	}
}

type slow struct{}

func (slow) Query(ctx context.Context, q string, _ time.Time) ([]Series, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("prometheus query %q: %w", q, ctx.Err())
}

func (s slow) QueryRange(ctx context.Context, q string, _, _ time.Time, _ time.Duration) ([]Series, error) {
	return s.Query(ctx, q, time.Time{})
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// The builtin dashboards are well formed: names that are path segments
// and HTML ids, unique, panels of a known kind with queries.
func TestBuiltin(t *testing.T) {
	names := map[string]bool{}
	for _, d := range Builtin() {
		if !nameRE.MatchString(d.Name) || names[d.Name] || d.Name == "static" {
			t.Errorf("dashboard name %q", d.Name)
		}
		names[d.Name] = true
		ids := map[string]bool{}
		for _, p := range d.Panels {
			if !nameRE.MatchString(p.ID) || ids[p.ID] {
				t.Errorf("%s: panel id %q", d.Name, p.ID)
			}
			ids[p.ID] = true
			if len(p.Queries) == 0 || p.Title == "" || p.Empty == "" {
				t.Errorf("%s/%s: no query, title or empty text", d.Name, p.ID)
			}
			switch p.Kind {
			case KindLine, KindStat, KindTable:
			default:
				t.Errorf("%s/%s: kind %q", d.Name, p.ID, p.Kind)
			}
		}
	}
	for _, want := range []string{"fleet", "upgrades", "drift", "planes", "hub", "kubernetes"} {
		if !names[want] {
			t.Errorf("no %s dashboard", want)
		}
	}
}
