//go:build integration

package agent

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/observability/promtest"
	"github.com/kubedos/kubedos/internal/spec"
)

// Debian's prometheus, run with the configuration kubedos generates,
// scrapes kubedosd's /metrics: mTLS with a reader certificate, the node's
// own name checked in its certificate. Only the target's address is
// changed (loopback for its wg-observability address).
func TestPrometheusScrapesNodeMetrics(t *testing.T) {
	e := newNodeEnv(t)
	u, err := url.Parse(serveMetrics(t, e))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spec.Parse(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	s := spec.WithDefaults(doc.Spec)
	s.Workloads.Observability.ScrapeInterval = "5s"
	// Prometheus scrapes itself at its wg-observability address: keep it on
	// loopback (nothing listens there).
	s.Topology.Nodes[1].PlaneAddresses = map[spec.Plane]string{spec.PlaneObservability: "127.0.0.2"}
	dir := t.TempDir()
	files, err := observability.Generate(s, []string{"w-1"}, observability.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	files["targets/kubedosd-w-1.json"] = []byte(`[{"targets": ["` + u.Host + `"], "labels": {"node": "w-1", "role": "worker"}}]`)
	// w-1's endpoint under w-2's job: its certificate does not name w-2,
	// so that scrape must fail.
	files["targets/kubedosd-w-2.json"] = []byte(`[{"targets": ["` + u.Host + `"], "labels": {"node": "w-2", "role": "worker"}}]`)
	promtest.WriteFiles(t, dir, files, e.ca)
	p := promtest.Start(t, dir)
	p.WaitFor(t, `up{job="kubedosd",node="w-1"}`, "1", time.Minute)
	p.WaitFor(t, `kubedos_node_info{job="kubedosd",node="w-1",build="b-0011"}`, "1", 10*time.Second)
	p.WaitFor(t, `up{job="kubedosd",node="w-2"}`, "0", 10*time.Second)
	// The node label is the target's; the series' own copy is not renamed.
	p.WaitFor(t, `count(kubedos_node_info{exported_node=~".+"}) or vector(0)`, "0", time.Second)
	d, err := p.Query(`scrape_duration_seconds{job="kubedosd",node="w-1"}`)
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Query(`scrape_samples_scraped{job="kubedosd",node="w-1"}`)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := strconv.ParseFloat(d, 64); f <= 0 {
		t.Errorf("scrape duration %q", d)
	}
	t.Logf("figure: kubedosd /metrics scraped by prometheus in %s s, %s samples", d, n)
}
