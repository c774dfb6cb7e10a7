//go:build integration

package hub

import (
	"context"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/observability/promtest"
	"github.com/kubedos/kubedos/internal/spec"
)

// Debian's prometheus, run with the configuration kubedos generates,
// scrapes the hub's /metrics (mTLS, the hub's name checked), and the fleet
// rules see the registry: a quarantined node fires its alert.
func TestPrometheusScrapesHubMetrics(t *testing.T) {
	e := newEnv(t)
	e.clock = &clock{t: time.Now()}
	e.newHub()
	w1, w2 := newNode(t, "w-1", "worker"), newNode(t, "w-2", "worker")
	e.register(w1)
	e.register(w2)
	e.mustEnroll(w1)
	w2.pcrs[11] = digest("another cmdline")
	if _, err := enroll(context.Background(), t, e.hub, w2, steps{}); err == nil {
		t.Fatal("w-2 enrolled with a foreign PCR 11")
	}
	addr := serveHubMetrics(t, e.hub, e.ca)

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
	files, err := observability.Generate(s, nil, observability.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	files[observability.FileHubTarget] = []byte(`[{"targets": ["` + addr + `"], "labels": {}}]`)
	promtest.WriteFiles(t, dir, files, e.ca)
	p := promtest.Start(t, dir)
	p.WaitFor(t, `up{job="kubedos-hub"}`, "1", 20*time.Second)
	p.WaitFor(t, `kubedos_hub_nodes{state="quarantined"}`, "1", 10*time.Second)
	p.WaitFor(t, `count(ALERTS{alertname="KubedosNodeQuarantined",node="w-2",alertstate="firing"})`, "1", 30*time.Second)
	// Revoke to alert: the next scrape sees the state, the next rule
	// evaluation fires (the rule has no hold time).
	start := time.Now()
	if err := e.hub.Revoke(context.Background(), admin, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	p.WaitFor(t, `count(ALERTS{alertname="KubedosNodeRevokedOrFenced",node="w-1",alertstate="firing"})`, "1", 30*time.Second)
	t.Logf("figure: revoke to firing alert in %s (scrape and evaluation every 5 s)", time.Since(start).Round(100*time.Millisecond))
	d, _ := p.Query(`scrape_duration_seconds{job="kubedos-hub"}`)
	n, _ := p.Query(`scrape_samples_scraped{job="kubedos-hub"}`)
	t.Logf("figure: hub /metrics (2 nodes) scraped by prometheus in %s s, %s samples", d, n)
}
