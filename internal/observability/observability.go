// Package observability makes what the prometheus node runs from the
// ClusterSpec (docs/observability.md): Prometheus's configuration, with one
// scrape job per node over wg-observability and mTLS exactly as kubedosd and
// the hub serve /metrics; the file-based service discovery files, whose
// contents follow the hub's registry (an enrolled node is scraped, any other
// is not); the alert rules; and a systemd drop-in that starts Debian's
// prometheus with the spec's retention on the data partition.
//
// It only makes bytes: writing them (internal/durable) and converging them
// onto the node are the caller's.
package observability

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// Ports of what is scraped. NodeMetricsPort and HubMetricsPort are
// internal/api's (a test checks they agree; this package sits below api).
const (
	NodeMetricsPort  = 7445
	HubMetricsPort   = 7446
	NodeExporterPort = 9100
	PrometheusPort   = 9090
	AlertmanagerPort = 9093
	NodeExporterPkg  = "prometheus-node-exporter"
	// DefaultDir is beside kubedosd's state directory, not in it: that
	// one is 0700 (identity keys), and Prometheus runs as its own user.
	DefaultDir        = "/var/lib/kubedos-observability"
	DefaultDataDir    = "/data/prometheus"
	DefaultConsoleDir = "/etc/prometheus"
)

// Job names, the `job` label of every series.
const (
	JobKubedosd     = "kubedosd"
	JobHub          = "kubedos-hub"
	JobNodeExporter = "node-exporter"
	JobPrometheus   = "prometheus"
	JobEtcd         = "etcd"
	JobAPIServer    = "kube-apiserver"
	JobKubelet      = "kubelet"
)

// Files of a generated configuration, relative to Options.Dir.
const (
	FileConfig    = "prometheus.yml"
	FileRules     = "rules/kubedos.rules.yml"
	FileDropIn    = "prometheus.service.d/kubedos.conf"
	DirTargets    = "targets"
	FileHubTarget = "targets/hub.json"
	FileExporters = "targets/node-exporter.json"
	FileEtcd      = "targets/etcd.json"
	FileAPIServer = "targets/kube-apiserver.json"
	// The reader certificate Prometheus presents, and the cluster CA that
	// vouches for the nodes and the hub; not generated here (no key ever
	// is): `kubedos keys issue prometheus --role reader` makes one.
	FileCA         = "tls/ca.crt"
	FileReaderCert = "tls/reader.crt"
	FileReaderKey  = "tls/reader.key"
	// The Kubernetes CA and the metrics credential the hub issues for the
	// reader key (pki.SignMonitoring) when Options.Kubernetes.
	FileKubeCA   = "tls/kube-ca.crt"
	FileKubeCert = "tls/kube.crt"
)

// ErrSpec is a spec this package cannot make a configuration of.
var ErrSpec = errors.New("observability")

// Options say where things live on the prometheus node.
type Options struct {
	// Dir holds every generated file (default DefaultDir, on the state
	// partition: the root and /etc are read-only).
	Dir string
	// DataDir is the time series database (default DefaultDataDir, on the
	// data partition, which upgrades never touch).
	DataDir string
	// ConsoleDir holds Debian's consoles and console_libraries.
	ConsoleDir string
	// Kubernetes: the API servers and kubelets are scraped too, with the
	// Kubernetes metrics credential (the hub sets it when it can issue one).
	Kubernetes bool
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.ConsoleDir == "" {
		o.ConsoleDir = DefaultConsoleDir
	}
	return o
}

// Files are generated files by path relative to Options.Dir.
type Files map[string][]byte

// Names returns the paths in order.
func (f Files) Names() []string {
	out := make([]string, 0, len(f))
	for k := range f {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Generate makes every file for s (defaulted and valid). enrolled are the
// nodes to scrape: those the hub's registry holds as enrolled. The
// configuration itself depends on the spec alone; only the targets files
// change as nodes enroll or are revoked, and Prometheus rereads those by
// itself.
func Generate(s *spec.ClusterSpec, enrolled []string, opt Options) (Files, error) {
	opt = opt.withDefaults()
	set, err := s.ObservabilitySettings()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSpec, err)
	}
	self, err := prometheusNode(s)
	if err != nil {
		return nil, err
	}
	cfg, err := Config(s, set, self, opt)
	if err != nil {
		return nil, err
	}
	files := Files{FileConfig: cfg, FileRules: Rules(), FileDropIn: DropIn(set, self, opt)}
	targets, err := Targets(s, enrolled, opt)
	if err != nil {
		return nil, err
	}
	for k, v := range targets {
		files[k] = v
	}
	return files, nil
}

// Listen is where Prometheus listens (the DropIn's --web.listen-address):
// its node's wg-observability address, which must be up before it starts.
func Listen(s *spec.ClusterSpec) (netip.AddrPort, error) {
	a, err := prometheusNode(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, PrometheusPort), nil
}

// DashboardsNode is the node that serves the dashboards (on the node API's
// DashboardsPort): the grafana node, or the prometheus node when the spec
// has none; false when the spec runs no Prometheus.
func DashboardsNode(s *spec.ClusterSpec) (spec.Node, bool) {
	if !s.Workloads.Observability.Prometheus {
		return spec.Node{}, false
	}
	var prom *spec.Node
	for i, n := range s.Topology.Nodes {
		switch n.Role {
		case spec.RoleGrafana:
			return n, true
		case spec.RolePrometheus:
			if prom == nil {
				prom = &s.Topology.Nodes[i]
			}
		}
	}
	if prom == nil {
		return spec.Node{}, false
	}
	return *prom, true
}

// prometheusNode is the node Prometheus runs on and its wg-observability
// address: Prometheus listens there only.
func prometheusNode(s *spec.ClusterSpec) (netip.Addr, error) {
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RolePrometheus {
			return obsAddress(s, n)
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: cluster %s has no node with role prometheus", ErrSpec, s.Metadata.Name)
}

// obsAddress is n's address on wg-observability: the only way Prometheus
// reaches a node.
func obsAddress(s *spec.ClusterSpec, n spec.Node) (netip.Addr, error) {
	if _, ok := s.Networking.Planes[spec.PlaneObservability]; !ok {
		return netip.Addr{}, fmt.Errorf("%w: networking.planes.observability is not declared: Prometheus scrapes over wg-observability only", ErrSpec)
	}
	a, err := s.PlaneAddress(n, spec.PlaneObservability)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %w", ErrSpec, err)
	}
	return a, nil
}

// hubServerName is the name in the hub's TLS certificate, whatever address
// it is reached at.
const hubServerName = pki.HubServerName

// promDuration writes d the way Prometheus parses durations (whole units,
// no Go-style "360h0m0s").
func promDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
}

// in joins Options.Dir and a file of this package.
func (o Options) in(file string) string { return path.Join(o.Dir, file) }
