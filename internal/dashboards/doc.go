// Package dashboards is what the grafana role serves instead of Grafana
// (docs/observability.md, "Dashboards and the grafana role"): kubedos's own
// pages, rendered on the server as HTML with inline SVG charts from
// Prometheus's HTTP API. No script runs in the browser and nothing comes
// from outside, so the pages work air-gapped; a page reloads itself with a
// meta refresh.
//
// The dashboards are data (Builtin): panels of PromQL over the metrics
// kubedosd and the hub serve, drawn as line charts, single numbers or
// tables. Label values come from nodes (names, peers); every one is bounded
// and escaped, and a chart draws at most MaxSeries lines. A failing query
// shows its error in its own panel, not as a failed page.
package dashboards
