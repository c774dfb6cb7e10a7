package dashboards

import (
	"github.com/kubedos/kubedos/internal/observability"
)

// Dashboard is one page: panels of PromQL, drawn in order.
type Dashboard struct {
	// Name is the page's path segment (letters, digits and dashes).
	Name        string
	Title       string
	Description string
	Panels      []Panel
}

// Panel is one chart, number or table.
type Panel struct {
	// ID is the panel's HTML id, unique in its dashboard.
	ID    string
	Title string
	Kind  Kind
	Unit  Unit
	// Queries are drawn together: one line per series, one number per
	// series, or one table of every query's series.
	Queries []Query
	// Empty says what no data means here, for a reader who expected some.
	Empty string
}

// Query is one PromQL expression of a panel.
type Query struct {
	Expr string
	// Legend names the series when the query has one (the series' labels
	// follow it when it has several); empty: the labels alone.
	Legend string
}

// Kind is how a panel is drawn.
type Kind string

const (
	// KindLine is a time series chart over the page's range.
	KindLine Kind = "line"
	// KindStat is each series' value now, in large type.
	KindStat Kind = "stat"
	// KindTable is each series now: its labels and value, one row each.
	KindTable Kind = "table"
)

// Unit formats a panel's values.
type Unit string

const (
	UnitCount       Unit = "count"
	UnitSeconds     Unit = "seconds"
	UnitBytesPerSec Unit = "bytes/s"
	UnitPerMinute   Unit = "/min"
)

// Job selectors of the series the dashboards read, from the scrape jobs
// internal/observability generates.
const (
	selHub  = `job="` + observability.JobHub + `"`
	selNode = `job="` + observability.JobKubedosd + `"`
	// Kubernetes and etcd targets, when the Kubernetes workload has them
	// scraped: jobs kube-apiserver, kube-scheduler, … (not kubedos-hub), kubelet and etcd.
	selKube = `job=~"kube-.*|kubelet|etcd"`
)

// orZero keeps a count at 0 rather than no data while what it counts is
// scraped at all (base has series), so "no data" still means nothing is
// scraped.
func orZero(count, base string) string {
	return count + " or on() (0 * count(" + base + "))"
}

// quantile is the q quantile of the hub's evidence verification over 5 min.
func quantile(q string) string {
	return `histogram_quantile(` + q + `, sum by (le) (rate(kubedos_hub_evidence_verification_seconds_bucket{` + selHub + `}[5m])))`
}

// Builtin are the dashboards the grafana node serves (issue 17): fleet
// attestation, upgrades and rollbacks, drift, planes, hub latency and
// Kubernetes health. Hub series are taken with max, not sum: replicas of
// the hub answer for the same registry.
func Builtin() []Dashboard {
	return []Dashboard{
		{
			Name: "fleet", Title: "Fleet attestation",
			Description: "Nodes in the hub's registry by state, and why the hub refused enrollments and renewals.",
			Panels: []Panel{
				{ID: "nodes", Title: "Nodes in the registry", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: `max(sum by (instance) (kubedos_hub_nodes{` + selHub + `}))`}},
					Empty:   "the hub is not scraped"},
				{ID: "enrolled", Title: "Enrolled", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: `max(kubedos_hub_nodes{` + selHub + `,state="enrolled"})`}}, Empty: "the hub is not scraped"},
				{ID: "quarantined", Title: "Quarantined", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: `max(kubedos_hub_nodes{` + selHub + `,state="quarantined"})`}}, Empty: "the hub is not scraped"},
				{ID: "revoked", Title: "Revoked or fenced", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: `max(sum by (instance) (kubedos_hub_nodes{` + selHub + `,state=~"revoked|fenced"}))`}}, Empty: "the hub is not scraped"},
				{ID: "states", Title: "Nodes by state", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (state) (kubedos_hub_nodes{` + selHub + `,state=~"enrolled|pending|quarantined|revoked|fenced"})`}},
					Empty:   "the hub is not scraped"},
				{ID: "refusals", Title: "Refusals and quarantines by check (per 15 min)", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (check) (increase(kubedos_hub_refusals_total{` + selHub + `}[15m]))`}},
					Empty:   "no refusal since the hub started"},
				{ID: "edge", Title: "Calls refused at the hub's edge, by reason", Kind: KindLine, Unit: UnitPerMinute,
					Queries: []Query{{Expr: `max by (reason) (rate(kubedos_hub_refused_total{` + selHub + `}[5m])) * 60`}},
					Empty:   "the hub is not scraped"},
				{ID: "not-enrolled", Title: "Nodes not enrolled", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (node, role, state) (kubedos_hub_node_state{` + selHub + `,state!="enrolled"})`}},
					Empty:   "every node the hub knows is enrolled"},
			},
		},
		{
			Name: "upgrades", Title: "Upgrades and rollbacks",
			Description: "Builds assigned and not yet attested, the builds in service and the slots nodes boot from.",
			Panels: []Panel{
				{ID: "pending", Title: "Upgrades pending", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: orZero(`count(max by (node) (kubedos_hub_node_upgrade_pending{`+selHub+`}))`, `kubedos_hub_nodes{`+selHub+`}`)}},
					Empty:   "the hub is not scraped"},
				{ID: "not-attested", Title: "Not attested for 30 min (rolled back or stuck)", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: orZero(`count(ALERTS{alertname="KubedosUpgradeNotAttested",alertstate="firing"})`, `kubedos_hub_nodes{`+selHub+`}`)}},
					Empty:   "the hub is not scraped"},
				{ID: "pending-over-time", Title: "Upgrades pending", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Legend: "pending", Expr: orZero(`count(max by (node) (kubedos_hub_node_upgrade_pending{`+selHub+`}))`, `kubedos_hub_nodes{`+selHub+`}`)}},
					Empty:   "the hub is not scraped"},
				{ID: "builds", Title: "Nodes by build in service", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `count by (build) (kubedos_node_info{` + selNode + `})`}}, Empty: "no kubedosd is scraped"},
				{ID: "slots", Title: "Nodes by boot slot", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `count by (slot) (kubedos_node_info{` + selNode + `})`}}, Empty: "no kubedosd is scraped"},
				{ID: "pending-nodes", Title: "Builds assigned, not attested", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (node, target) (kubedos_hub_node_upgrade_pending{` + selHub + `})`}},
					Empty:   "no upgrade under way"},
				{ID: "node-builds", Title: "Build and slot of each node", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (node, role, build, slot) (kubedos_node_info{` + selNode + `})`}}, Empty: "no kubedosd is scraped"},
			},
		},
		{
			Name: "drift", Title: "Drift",
			Description: "Differences between each node's writable state and its applied configuration, checked at every scrape.",
			Panels: []Panel{
				{ID: "drifted", Title: "Nodes drifted", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: orZero(`count(sum by (node) (kubedos_drift_items{`+selNode+`}) > 0)`, `kubedos_drift_items{`+selNode+`}`)}},
					Empty:   "no kubedosd is scraped"},
				{ID: "items", Title: "Drift items by node", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `sum by (node) (kubedos_drift_items{` + selNode + `})`}}, Empty: "no kubedosd is scraped"},
				{ID: "detected", Title: "Checks that found drift, by node (per 15 min)", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `sum by (node) (increase(kubedos_drift_detected_total{` + selNode + `}[15m]))`}}, Empty: "no kubedosd is scraped"},
				{ID: "drift-now", Title: "Drift now", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `sum by (node, kind) (kubedos_drift_items{` + selNode + `}) > 0`}}, Empty: "no node has drifted"},
			},
		},
		{
			Name: "planes", Title: "Planes",
			Description: "The WireGuard planes: interfaces up, handshake ages (a peer is stale past 3 min) and traffic.",
			Panels: []Panel{
				{ID: "down", Title: "Plane interfaces down", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: orZero(`count(kubedos_plane_up{`+selNode+`} == 0)`, `kubedos_plane_up{`+selNode+`}`)}}, Empty: "no kubedosd is scraped"},
				{ID: "stale", Title: "Peers without a handshake for 3 min", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: orZero(`count(time() - kubedos_plane_peer_last_handshake_timestamp_seconds{`+selNode+`} > 180)`, `kubedos_plane_peer_last_handshake_timestamp_seconds{`+selNode+`}`)}},
					Empty:   "no kubedosd is scraped"},
				{ID: "up", Title: "Interfaces up by plane", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `sum by (plane) (kubedos_plane_up{` + selNode + `})`}}, Empty: "no kubedosd is scraped"},
				{ID: "handshake-age", Title: "Oldest handshake by plane", Kind: KindLine, Unit: UnitSeconds,
					Queries: []Query{{Expr: `max by (plane) (time() - (kubedos_plane_peer_last_handshake_timestamp_seconds{` + selNode + `} > 0))`}},
					Empty:   "no handshake recorded"},
				{ID: "traffic", Title: "Received by plane", Kind: KindLine, Unit: UnitBytesPerSec,
					Queries: []Query{{Expr: `sum by (plane) (rate(kubedos_plane_peer_receive_bytes_total{` + selNode + `}[5m]))`}}, Empty: "no kubedosd is scraped"},
				{ID: "oldest", Title: "Oldest handshakes (node, plane, peer)", Kind: KindTable, Unit: UnitSeconds,
					Queries: []Query{{Expr: `topk(20, max by (node, plane, peer) (time() - (kubedos_plane_peer_last_handshake_timestamp_seconds{` + selNode + `} > 0)))`}},
					Empty:   "no handshake recorded"},
				{ID: "never", Title: "Peers never handshaken", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (node, plane, peer) (kubedos_plane_peer_last_handshake_timestamp_seconds{` + selNode + `} == 0)`}},
					Empty:   "every peer has handshaken"},
			},
		},
		{
			Name: "hub", Title: "Hub latency",
			Description: "Time the hub takes to verify a node's quote, event log and PCRs, and what it answered.",
			Panels: []Panel{
				{ID: "p90", Title: "Verification, 90th percentile (5 min)", Kind: KindStat, Unit: UnitSeconds,
					Queries: []Query{{Expr: quantile("0.9")}}, Empty: "no verification in the last 5 min"},
				{ID: "rate", Title: "Verifications", Kind: KindStat, Unit: UnitPerMinute,
					Queries: []Query{{Expr: `max(rate(kubedos_hub_evidence_verification_seconds_count{` + selHub + `}[5m])) * 60`}}, Empty: "the hub is not scraped"},
				{ID: "latency", Title: "Evidence verification time", Kind: KindLine, Unit: UnitSeconds,
					Queries: []Query{{Legend: "p50", Expr: quantile("0.5")}, {Legend: "p90", Expr: quantile("0.9")}, {Legend: "p99", Expr: quantile("0.99")}},
					Empty:   "no verification in the range"},
				{ID: "enrollments", Title: "Enrollments and renewals by outcome (per 15 min)", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `max by (kind, outcome) (increase(kubedos_hub_enrollments_total{` + selHub + `}[15m]))`}}, Empty: "the hub is not scraped"},
				{ID: "joins", Title: "Plane joins answered", Kind: KindLine, Unit: UnitPerMinute,
					Queries: []Query{{Legend: "joins", Expr: `max(rate(kubedos_hub_plane_joins_total{` + selHub + `}[5m])) * 60`}}, Empty: "the hub is not scraped"},
				{ID: "scrape", Title: "Hub scrape", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `up{` + selHub + `}`}}, Empty: "the hub is not a target"},
			},
		},
		{
			Name: "kubernetes", Title: "Kubernetes health",
			Description: "The Kubernetes and etcd targets Prometheus scrapes (jobs kube-*, kubelet and etcd), when the cluster runs Kubernetes.",
			Panels: []Panel{
				{ID: "targets-down", Title: "Targets down", Kind: KindStat, Unit: UnitCount,
					Queries: []Query{{Expr: orZero(`count(up{`+selKube+`} == 0)`, `up{`+selKube+`}`)}},
					Empty:   "no Kubernetes or etcd target is scraped"},
				{ID: "up-by-job", Title: "Targets up by job", Kind: KindLine, Unit: UnitCount,
					Queries: []Query{{Expr: `sum by (job) (up{` + selKube + `})`}}, Empty: "no Kubernetes or etcd target is scraped"},
				{ID: "targets", Title: "Targets", Kind: KindTable, Unit: UnitCount,
					Queries: []Query{{Expr: `up{` + selKube + `}`}}, Empty: "no Kubernetes or etcd target is scraped"},
			},
		},
	}
}
