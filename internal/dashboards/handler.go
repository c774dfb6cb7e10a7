package dashboards

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Source is what the pages query: *Client, or a fake in tests.
type Source interface {
	Query(ctx context.Context, q string, at time.Time) ([]Series, error)
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error)
}

// Options tune the pages; the zero value serves Builtin.
type Options struct {
	// Cluster is shown on every page.
	Cluster string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Refresh is how often a page reloads itself (DefaultRefresh when 0,
	// never when negative).
	Refresh time.Duration
	// Timeout bounds the queries of one page (DefaultTimeout when 0); a
	// panel whose query ran out says so.
	Timeout time.Duration
	// Home, when set, is linked as the way back (the console: "/").
	Home string
	// Dashboards replace Builtin.
	Dashboards []Dashboard
}

// Defaults of Options.
const (
	DefaultRefresh = 30 * time.Second
	DefaultTimeout = 10 * time.Second
	DefaultRange   = "6h"
	// parallel bounds the queries one page has in flight at Prometheus.
	parallel = 4
	// MaxRows bounds a table; the table says how many rows were left out.
	MaxRows = 100
	// maxColumns bounds a table's label columns.
	maxColumns = 8
	// maxError bounds a panel's error message (it quotes the query and
	// Prometheus's answer).
	maxError = 1024
	// points is about how many steps a chart has across its range.
	points = 240
)

// ranges are the time ranges a page offers, in order.
var ranges = []struct {
	Name string
	D    time.Duration
}{{"1h", time.Hour}, {"6h", 6 * time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

//go:embed assets
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "assets/*.html"))

// Handler serves an index of the dashboards at its root, each dashboard at
// /NAME (?range=1h|6h|24h|7d) and its stylesheet under /static/. Links are
// relative, so it can be mounted under any prefix (http.StripPrefix).
type Handler struct {
	src    Source
	opt    Options
	boards []Dashboard
	byName map[string]*Dashboard
	mux    *http.ServeMux
}

// New serves the dashboards from src.
func New(src Source, opt Options) *Handler {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Refresh == 0 {
		opt.Refresh = DefaultRefresh
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	h := &Handler{src: src, opt: opt, boards: opt.Dashboards, byName: map[string]*Dashboard{}}
	if h.boards == nil {
		h.boards = Builtin()
	}
	for i := range h.boards {
		h.byName[h.boards[i].Name] = &h.boards[i]
	}
	static, _ := fs.Sub(assets, "assets/static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", h.index)
	mux.HandleFunc("GET /{name}", h.board)
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// No script at all; the stylesheet is ours.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// view is what every page's template gets.
type view struct {
	Title, Cluster, Home string
	Boards               []Dashboard
	Refresh              int // seconds; 0: none
	Updated              string
	Error                string
	Board                *boardView
}

type boardView struct {
	Name, Title, Description string
	Range                    string
	Ranges                   []rangeLink
	Panels                   []panelView
}

type rangeLink struct {
	Name, Href string
	Current    bool
}

type panelView struct {
	Panel
	Err    string
	Chart  *Chart
	Stats  []statView
	Table  *tableView
	NoData bool
}

type statView struct{ Label, Value string }

type tableView struct {
	Columns []string
	Rows    [][]string
	Hidden  int
}

func (h *Handler) base(title string) view {
	v := view{Title: title, Cluster: h.opt.Cluster, Home: h.opt.Home, Boards: h.boards,
		Updated: h.opt.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	if h.opt.Refresh > 0 {
		v.Refresh = max(1, int(h.opt.Refresh/time.Second))
	}
	return v
}

func (h *Handler) render(w http.ResponseWriter, status int, v view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "page", v); err != nil {
		// Headers are gone; the page ends where it failed.
		fmt.Fprintf(w, "<p class=error>render: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusOK, h.base("Dashboards"))
}

func (h *Handler) board(w http.ResponseWriter, r *http.Request) {
	d, ok := h.byName[r.PathValue("name")]
	if !ok {
		v := h.base("Not found")
		v.Refresh = 0
		v.Error = "No dashboard " + clip(r.PathValue("name"), 64) + "."
		h.render(w, http.StatusNotFound, v)
		return
	}
	name := r.URL.Query().Get("range")
	if name == "" {
		name = DefaultRange
	}
	span := time.Duration(0)
	var links []rangeLink
	for _, rg := range ranges {
		links = append(links, rangeLink{Name: rg.Name, Href: d.Name + "?range=" + rg.Name, Current: rg.Name == name})
		if rg.Name == name {
			span = rg.D
		}
	}
	if span == 0 {
		v := h.base(d.Title)
		v.Refresh = 0
		v.Error = fmt.Sprintf("range %q: one of 1h, 6h, 24h, 7d", clip(name, 32))
		h.render(w, http.StatusBadRequest, v)
		return
	}
	v := h.base(d.Title)
	v.Board = &boardView{Name: d.Name, Title: d.Title, Description: d.Description, Range: name, Ranges: links,
		Panels: h.panels(r.Context(), d, span)}
	h.render(w, http.StatusOK, v)
}

// panels runs every query of d, a few at a time, each panel keeping its
// own error: one bad query or a slow Prometheus does not blank the page.
func (h *Handler) panels(ctx context.Context, d *Dashboard, span time.Duration) []panelView {
	ctx, cancel := context.WithTimeout(ctx, h.opt.Timeout)
	defer cancel()
	step := max(time.Second, (span / points).Truncate(time.Second))
	// Instant queries and the charts' right edge are now, not rounded: a
	// rounded time could miss the latest scrape.
	to := h.opt.Now()
	from := to.Add(-span)

	type result struct {
		series []Series
		err    error
	}
	results := make([][]result, len(d.Panels))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, p := range d.Panels {
		results[i] = make([]result, len(p.Queries))
		for j, q := range p.Queries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					results[i][j].err = fmt.Errorf("prometheus query %q: %w", q.Expr, ctx.Err())
					return
				}
				defer func() { <-sem }()
				var s []Series
				var err error
				if p.Kind == KindLine {
					s, err = h.src.QueryRange(ctx, q.Expr, from, to, step)
				} else {
					s, err = h.src.Query(ctx, q.Expr, to)
				}
				results[i][j] = result{s, err}
			}()
		}
	}
	wg.Wait()

	out := make([]panelView, len(d.Panels))
	for i, p := range d.Panels {
		pv := panelView{Panel: p}
		var errs []string
		sets := make([][]Series, len(p.Queries))
		legends := make([]string, len(p.Queries))
		n := 0
		for j, res := range results[i] {
			if res.err != nil {
				errs = append(errs, res.err.Error())
			}
			sets[j], legends[j] = res.series, p.Queries[j].Legend
			n += len(res.series)
		}
		switch {
		case len(errs) > 0:
			pv.Err = clip(strings.Join(errs, "; "), maxError)
		case n == 0:
			pv.NoData = true
		case p.Kind == KindLine:
			pv.Chart = lineChart(sets, legends, p.Unit, from, to, step)
		case p.Kind == KindStat:
			pv.Stats = stats(sets, legends, p.Unit)
		case p.Kind == KindTable:
			pv.Table = table(sets, p.Unit)
		}
		out[i] = pv
	}
	return out
}

// stats are the current values of a stat panel's series, at most MaxSeries.
func stats(sets [][]Series, legends []string, unit Unit) []statView {
	var out []statView
	for i, set := range sets {
		for _, s := range set {
			if len(out) == MaxSeries {
				return out
			}
			label := ""
			if len(set) > 1 || legends[i] != "" {
				label = legendOf(legends[i], s.Labels, len(set))
			}
			out = append(out, statView{Label: label, Value: lastValue(unit, s.Points)})
		}
	}
	return out
}

// columnOrder puts the labels a reader looks for first.
var columnOrder = map[string]int{"node": 0, "role": 1, "state": 2, "plane": 3, "peer": 4, "kind": 5, "job": 6, "instance": 7}

// table lays out series as rows: a column per label (the first maxColumns
// in columnOrder, then by name) and the value last, at most MaxRows rows.
func table(sets [][]Series, unit Unit) *tableView {
	keys := map[string]bool{}
	var rows []Series
	for _, set := range sets {
		for _, s := range set {
			for k := range s.Labels {
				if k != "__name__" {
					keys[k] = true
				}
			}
			rows = append(rows, s)
		}
	}
	cols := make([]string, 0, len(keys))
	for k := range keys {
		cols = append(cols, k)
	}
	sort.Slice(cols, func(i, j int) bool {
		oi, iok := columnOrder[cols[i]]
		oj, jok := columnOrder[cols[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return cols[i] < cols[j]
	})
	if len(cols) > maxColumns {
		cols = cols[:maxColumns]
	}
	// Rows sorted by their labels; only the shown ones are formatted.
	type keyed struct {
		key string
		s   Series
	}
	ks := make([]keyed, len(rows))
	for i, s := range rows {
		var b strings.Builder
		for _, c := range cols {
			b.WriteString(s.Labels[c])
			b.WriteByte(0)
		}
		ks[i] = keyed{b.String(), s}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	t := &tableView{Columns: append(cols, "value")}
	if len(ks) > MaxRows {
		t.Hidden = len(ks) - MaxRows
		ks = ks[:MaxRows]
	}
	for _, k := range ks {
		row := make([]string, 0, len(cols)+1)
		for _, c := range cols {
			row = append(row, clip(k.s.Labels[c], maxCell))
		}
		t.Rows = append(t.Rows, append(row, lastValue(unit, k.s.Points)))
	}
	return t
}
