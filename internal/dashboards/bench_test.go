package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// fleetAnswers are Prometheus's answers to the fleet dashboard for n nodes,
// as JSON: a node in seven is quarantined, one revoked, one pending (the
// rest enrolled), six refusal checks and three edge reasons over the
// range's 240 steps.
func fleetAnswers(n int, now time.Time) map[string][]byte {
	states := []string{"enrolled", "enrolled", "enrolled", "enrolled", "pending", "quarantined", "revoked"}
	count := map[string]int{}
	var rows []any
	for i := range n {
		st := states[i%len(states)]
		count[st]++
		if st != "enrolled" {
			rows = append(rows, map[string]any{"metric": map[string]string{"node": fmt.Sprintf("node-%05d", i), "role": "worker", "state": st},
				"value": []any{now.Unix(), "1"}})
		}
	}
	vector := func(result []any) []byte {
		b, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
		return b
	}
	one := func(v int) []byte {
		return vector([]any{map[string]any{"metric": map[string]string{}, "value": []any{now.Unix(), strconv.Itoa(v)}}})
	}
	matrix := func(label string, values []string, v func(k, step int) int) []byte {
		var result []any
		for k, lv := range values {
			var pts []any
			for s := range points {
				pts = append(pts, []any{now.Add(time.Duration(s-points) * 90 * time.Second).Unix(), strconv.Itoa(v(k, s))})
			}
			result = append(result, map[string]any{"metric": map[string]string{label: lv}, "values": pts})
		}
		b, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": result}})
		return b
	}
	out := map[string][]byte{}
	for _, p := range Builtin()[0].Panels {
		q := p.Queries[0].Expr
		switch p.ID {
		case "nodes":
			out[q] = one(n)
		case "enrolled", "quarantined":
			out[q] = one(count[p.ID])
		case "revoked":
			out[q] = one(count["revoked"])
		case "states":
			out[q] = matrix("state", []string{"enrolled", "pending", "quarantined", "revoked", "fenced"}, func(k, s int) int { return count[states[k]] * s / points })
		case "refusals":
			out[q] = matrix("check", []string{"pcr-policy", "nonce", "ek-policy", "event-log", "quote", "build"}, func(k, s int) int { return (k + s) % 7 })
		case "edge":
			out[q] = matrix("reason", []string{"rate-limit", "anonymous", "revoked-certificate"}, func(k, s int) int { return k * s % 5 })
		case "not-enrolled":
			out[q] = vector(rows)
		}
	}
	return out
}

// BenchmarkFleetPage is the server time of the fleet dashboard for a fleet
// of n nodes: the queries to a Prometheus over loopback HTTP (answers
// prepared: Prometheus's own time is not counted), decoding, layout and
// rendering.
func BenchmarkFleetPage(b *testing.B) {
	now := time.Now()
	for _, n := range []int{16, 1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			answers := fleetAnswers(n, now)
			prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, ok := answers[r.FormValue("query")]
				if !ok {
					http.Error(w, "unknown query", http.StatusBadRequest)
					return
				}
				_, _ = w.Write(body)
			}))
			defer prom.Close()
			c, err := NewClient(prom.URL, prom.Client())
			if err != nil {
				b.Fatal(err)
			}
			h := New(c, Options{Now: func() time.Time { return now }})
			srv := httptest.NewServer(h)
			defer srv.Close()
			var page []byte
			b.ResetTimer()
			for b.Loop() {
				res, err := srv.Client().Get(srv.URL + "/fleet")
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
				page = body
			}
			// Every panel drawn, none failed: the figure is of a whole page.
			if bytes.Contains(page, []byte("panel-error")) || bytes.Contains(page, []byte(`class="nodata"`)) {
				b.Fatalf("the fleet page has a failed or empty panel:\n%s", page)
			}
			b.ReportMetric(float64(len(page)), "page-bytes")
		})
	}
}

// BenchmarkFleetRender is the same page from series already decoded: the
// handler's own share (layout and rendering), without HTTP or JSON.
func BenchmarkFleetRender(b *testing.B) {
	now := time.Now()
	for _, n := range []int{16, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			f := &fake{series: map[string][]Series{}}
			for q, body := range fleetAnswers(n, now) {
				var a answer
				if err := json.Unmarshal(body, &a); err != nil {
					b.Fatal(err)
				}
				s, err := decodeResult(a.Data.ResultType, a.Data.Result)
				if err != nil {
					b.Fatal(err)
				}
				f.series[q] = s
			}
			h := New(f, Options{Now: func() time.Time { return now }})
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fleet", nil))
				if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte("panel-error")) {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
