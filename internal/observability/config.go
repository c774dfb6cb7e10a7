package observability

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// The parts of Prometheus's configuration file we write (its own names).
type promConfig struct {
	Global        promGlobal   `yaml:"global"`
	RuleFiles     []string     `yaml:"rule_files"`
	Alerting      promAlerting `yaml:"alerting"`
	ScrapeConfigs []scrapeJob  `yaml:"scrape_configs"`
}

type promGlobal struct {
	ScrapeInterval     string            `yaml:"scrape_interval"`
	EvaluationInterval string            `yaml:"evaluation_interval"`
	ScrapeTimeout      string            `yaml:"scrape_timeout"`
	ExternalLabels     map[string]string `yaml:"external_labels"`
}

type promAlerting struct {
	Alertmanagers []alertmanager `yaml:"alertmanagers"`
}

type alertmanager struct {
	StaticConfigs []staticConfig `yaml:"static_configs"`
}

type staticConfig struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels,omitempty"`
}

type scrapeJob struct {
	JobName        string          `yaml:"job_name"`
	Scheme         string          `yaml:"scheme,omitempty"`
	TLSConfig      *tlsConfig      `yaml:"tls_config,omitempty"`
	FileSDConfigs  []fileSD        `yaml:"file_sd_configs,omitempty"`
	StaticConfigs  []staticConfig  `yaml:"static_configs,omitempty"`
	RelabelConfigs []relabelConfig `yaml:"relabel_configs,omitempty"`
	// MetricRelabelConfigs drop what the target's labels make redundant.
	MetricRelabelConfigs []relabelConfig `yaml:"metric_relabel_configs,omitempty"`
}

type tlsConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	MinVersion string `yaml:"min_version"`
}

type fileSD struct {
	Files           []string `yaml:"files"`
	RefreshInterval string   `yaml:"refresh_interval"`
}

type relabelConfig struct {
	Action      string `yaml:"action,omitempty"`
	Regex       string `yaml:"regex,omitempty"`
	TargetLabel string `yaml:"target_label,omitempty"`
	Replacement string `yaml:"replacement,omitempty"`
}

// sdRefresh bounds how long a revoked node stays scraped when the file
// watch misses a change (Prometheus also watches the files).
const sdRefresh = "30s"

// Config is prometheus.yml for s. Every node gets its own kubedosd job:
// its certificate names only the node (pki: DNS SAN = node name), and
// Prometheus sets the TLS server name per job, not per target, so one job
// per node is how each is verified against its own name. The job label is
// set back to "kubedosd" so queries and rules see one job.
func Config(s *spec.ClusterSpec, set spec.ObservabilitySettings, self netip.Addr, opt Options) ([]byte, error) {
	opt = opt.withDefaults()
	tls := func(server string) *tlsConfig {
		return &tlsConfig{CAFile: opt.in(FileCA), CertFile: opt.in(FileReaderCert), KeyFile: opt.in(FileReaderKey),
			ServerName: server, MinVersion: "TLS13"}
	}
	interval := promDuration(set.ScrapeInterval)
	c := promConfig{
		Global: promGlobal{ScrapeInterval: interval, EvaluationInterval: interval,
			// A scrape checks drift afresh on the node: give it most of the interval.
			ScrapeTimeout:  promDuration(set.ScrapeInterval * 2 / 3),
			ExternalLabels: map[string]string{"cluster": s.Metadata.Name}},
		RuleFiles: []string{opt.in(FileRules)},
		Alerting: promAlerting{Alertmanagers: []alertmanager{{StaticConfigs: []staticConfig{{
			Targets: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(AlertmanagerPort))}}}}}},
	}
	c.ScrapeConfigs = append(c.ScrapeConfigs, scrapeJob{JobName: JobPrometheus,
		StaticConfigs: []staticConfig{{Targets: []string{net.JoinHostPort(self.String(), strconv.Itoa(PrometheusPort))}}}})
	c.ScrapeConfigs = append(c.ScrapeConfigs, scrapeJob{JobName: JobHub, Scheme: "https", TLSConfig: tls(hubServerName),
		FileSDConfigs: []fileSD{{Files: []string{opt.in(FileHubTarget)}, RefreshInterval: sdRefresh}}})
	for _, n := range s.Topology.Nodes {
		c.ScrapeConfigs = append(c.ScrapeConfigs, scrapeJob{JobName: JobKubedosd + "/" + n.Name, Scheme: "https", TLSConfig: tls(n.Name),
			FileSDConfigs:  []fileSD{{Files: []string{opt.in(nodeTargetFile(n.Name))}, RefreshInterval: sdRefresh}},
			RelabelConfigs: []relabelConfig{{TargetLabel: "job", Replacement: JobKubedosd}},
			// kubedos_node_info names the node and role itself; the target
			// labels say the same, so Prometheus's exported_ copies go.
			MetricRelabelConfigs: []relabelConfig{{Action: "labeldrop", Regex: "exported_(node|role)"}}})
	}
	if len(kubeplan.EtcdNodes(s)) > 0 {
		// etcd's plain metrics listener (kubeplan.EtcdMetricsPort): no
		// data behind it, the planes its only way in.
		c.ScrapeConfigs = append(c.ScrapeConfigs, scrapeJob{JobName: JobEtcd,
			FileSDConfigs: []fileSD{{Files: []string{opt.in(FileEtcd)}, RefreshInterval: sdRefresh}}})
	}
	if opt.Kubernetes && s.Workloads.Kubernetes.Enabled {
		c.ScrapeConfigs = append(c.ScrapeConfigs, kubeJobs(s, opt)...)
	}
	if len(exporterNodes(s)) > 0 {
		c.ScrapeConfigs = append(c.ScrapeConfigs, scrapeJob{JobName: JobNodeExporter,
			FileSDConfigs: []fileSD{{Files: []string{opt.in(FileExporters)}, RefreshInterval: sdRefresh}}})
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Prometheus configuration of cluster %s, generated by kubedos from its spec\n# (docs/observability.md). Do not edit: convergence rewrites it.\n", s.Metadata.Name)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("prometheus.yml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// kubeJobs scrape the API servers and kubelets with the Kubernetes
// metrics credential (O system:monitoring, its key the reader key),
// checked against the Kubernetes CA: one job for every API server (their
// certificates all name "kubernetes"), one per kubelet node (each serving
// certificate names its node), relabelled to one "kubelet" job.
func kubeJobs(s *spec.ClusterSpec, opt Options) []scrapeJob {
	tls := func(server string) *tlsConfig {
		return &tlsConfig{CAFile: opt.in(FileKubeCA), CertFile: opt.in(FileKubeCert), KeyFile: opt.in(FileReaderKey),
			ServerName: server, MinVersion: "TLS13"}
	}
	jobs := []scrapeJob{{JobName: JobAPIServer, Scheme: "https", TLSConfig: tls(kubeAPIServerName),
		FileSDConfigs: []fileSD{{Files: []string{opt.in(FileAPIServer)}, RefreshInterval: sdRefresh}}}}
	for _, n := range s.Topology.Nodes {
		if !slices.Contains(kubeplan.ComponentsFor(s, n.Role), kubeplan.Kubelet) {
			continue
		}
		jobs = append(jobs, scrapeJob{JobName: JobKubelet + "/" + n.Name, Scheme: "https", TLSConfig: tls(n.Name),
			FileSDConfigs:  []fileSD{{Files: []string{opt.in(kubeletTargetFile(n.Name))}, RefreshInterval: sdRefresh}},
			RelabelConfigs: []relabelConfig{{TargetLabel: "job", Replacement: JobKubelet}}})
	}
	return jobs
}

// kubeAPIServerName is a DNS name every API server's certificate carries
// (pki's apiserver SANs).
const kubeAPIServerName = "kubernetes"

// kubeletTargetFile is the file-SD file of a node's kubelet job.
func kubeletTargetFile(node string) string {
	return DirTargets + "/kubelet-" + node + ".json"
}

// nodeTargetFile is the file-SD file of a node's kubedosd job.
func nodeTargetFile(node string) string {
	return DirTargets + "/kubedosd-" + node + ".json"
}

// exporterNodes are the nodes whose image has node exporter (the spec's
// packages for every role, or for the node's role).
func exporterNodes(s *spec.ClusterSpec) map[string]bool {
	out := map[string]bool{}
	has := func(pkgs []string) bool {
		for _, p := range pkgs {
			if strings.TrimSpace(p) == NodeExporterPkg {
				return true
			}
		}
		return false
	}
	all := has(s.OS.Packages)
	for _, n := range s.Topology.Nodes {
		if all || has(s.OS.RolePackages[n.Role]) {
			out[n.Name] = true
		}
	}
	return out
}

// DropIn is the systemd drop-in for Debian's prometheus.service: the
// configuration from the state partition, the database on the data
// partition bounded by the spec's retention, listening on the node's
// wg-observability address only.
func DropIn(set spec.ObservabilitySettings, self netip.Addr, opt Options) []byte {
	opt = opt.withDefaults()
	args := []string{
		"--config.file=" + opt.in(FileConfig),
		"--storage.tsdb.path=" + opt.DataDir,
		"--storage.tsdb.retention.time=" + promDuration(set.RetentionTime),
		// Prometheus reads GB as 2^30 bytes.
		fmt.Sprintf("--storage.tsdb.retention.size=%dGB", set.RetentionGiB),
		"--web.listen-address=" + net.JoinHostPort(self.String(), strconv.Itoa(PrometheusPort)),
		"--web.console.templates=" + opt.ConsoleDir + "/consoles",
		"--web.console.libraries=" + opt.ConsoleDir + "/console_libraries",
	}
	return []byte(fmt.Sprintf(`# Generated by kubedos (docs/observability.md). Debian's unit reads $ARGS
# from /etc/default/prometheus, which the read-only root cannot change.
[Unit]
RequiresMountsFor=%s %s

[Service]
ExecStart=
ExecStart=/usr/bin/prometheus %s
`, opt.Dir, opt.DataDir, strings.Join(args, " \\\n  ")))
}
