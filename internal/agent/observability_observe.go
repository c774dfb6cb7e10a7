package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/boundedio"
)

// observePrometheus summarizes Prometheus's active targets and firing
// alerts from its HTTP API: "targets up 3/4 (down: w-2); firing:
// KubedosNodeRevokedOrFenced{node=w-2}". Label values are the spec's node
// names, clipped anyway.
func observePrometheus(ctx context.Context, listen netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	base := "http://" + listen.String()
	if err := getJSON(ctx, base+"/api/v1/targets?state=active", &targets); err != nil {
		return "", err
	}
	var alerts struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := getJSON(ctx, base+"/api/v1/alerts", &alerts); err != nil {
		return "", err
	}
	up, down := 0, []string{}
	for _, t := range targets.Data.ActiveTargets {
		if t.Health == "up" {
			up++
			continue
		}
		down = append(down, clipString(t.Labels["job"]+"/"+t.Labels["node"]))
	}
	var firing []string
	for _, a := range alerts.Data.Alerts {
		if a.State == "firing" {
			firing = append(firing, clipString(a.Labels["alertname"])+"{node="+clipString(a.Labels["node"])+"}")
		}
	}
	slices.Sort(down)
	slices.Sort(firing)
	out := fmt.Sprintf("targets up %d/%d", up, len(targets.Data.ActiveTargets))
	if len(down) > 0 {
		out += " (down: " + strings.Join(down, ", ") + ")"
	}
	if len(firing) > 0 {
		out += "; firing: " + strings.Join(firing, ", ")
	}
	// The figures docs/benchmarks.md records: the slowest kubedosd scrape
	// and Prometheus's own memory.
	for _, q := range []struct{ label, expr, unit string }{
		{"slowest kubedosd scrape", `max(scrape_duration_seconds{job="kubedosd"}) * 1000`, "ms"},
		{"Prometheus RSS", `max(process_resident_memory_bytes{job="prometheus"}) / 1048576`, "MiB"},
	} {
		if v, ok := queryScalar(ctx, base, q.expr); ok {
			out += fmt.Sprintf("; %s %.0f %s", q.label, v, q.unit)
		}
	}
	return out, nil
}

// queryScalar is the one value of an instant query; false when Prometheus
// has none (yet).
func queryScalar(ctx context.Context, base, expr string) (float64, bool) {
	var res struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, base+"/api/v1/query?query="+url.QueryEscape(expr), &res); err != nil || len(res.Data.Result) != 1 {
		return 0, false
	}
	str, ok := res.Data.Result[0].Value[1].(string)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(str, 64)
	return v, err == nil
}

// maxPromAnswer bounds what is read of one Prometheus API answer.
const maxPromAnswer = 4 << 20

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, res.Status)
	}
	b, err := boundedio.ReadAll(res.Body, maxPromAnswer, url)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
