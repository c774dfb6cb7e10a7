package observability

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
)

func reference(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	doc, err := spec.Parse(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	return spec.WithDefaults(doc.Spec)
}

func allNodes(s *spec.ClusterSpec) []string {
	var out []string
	for _, n := range s.Topology.Nodes {
		out = append(out, n.Name)
	}
	return out
}

func TestPortsAgreeWithAPI(t *testing.T) {
	if NodeMetricsPort != api.NodeMetricsPort || HubMetricsPort != api.HubMetricsPort || hubServerName != api.HubServerName {
		t.Errorf("ports %d/%d and hub name %q differ from internal/api's %d/%d %q",
			NodeMetricsPort, HubMetricsPort, hubServerName, api.NodeMetricsPort, api.HubMetricsPort, api.HubServerName)
	}
}

func TestGenerateReference(t *testing.T) {
	s := reference(t)
	enrolled := []string{"master", "prometheus", "w-1"}
	files, err := Generate(s, enrolled, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// One kubedosd file per spec node, the hub's, node exporter's (every
	// role has it in the reference), etcd's, the config, the rules, the
	// drop-in.
	if got, want := len(files), len(s.Topology.Nodes)+6; got != want {
		t.Errorf("%d files, want %d: %v", got, want, files.Names())
	}
	// etcd: only the enrolled members (none of the reference's three
	// here), on their wg-observability address.
	if string(files[FileEtcd]) != "[]\n" {
		t.Errorf("etcd targets with no member enrolled: %s", files[FileEtcd])
	}
	withEtcd, err := Generate(s, append(enrolled, "etcd-2"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(withEtcd[FileEtcd]), `:2381"`) || !strings.Contains(string(withEtcd[FileEtcd]), `"node": "etcd-2"`) {
		t.Errorf("etcd targets with etcd-2 enrolled: %s", withEtcd[FileEtcd])
	}
	var groups []targetGroup
	decode := func(name string) []targetGroup {
		t.Helper()
		groups = nil
		if err := json.Unmarshal(files[name], &groups); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return groups
	}
	if g := decode("targets/kubedosd-w-1.json"); len(g) != 1 || g[0].Targets[0] != "10.78.0.41:7445" || g[0].Labels["node"] != "w-1" || g[0].Labels["role"] != "worker" {
		t.Errorf("w-1 (enrolled): %+v, want its wg-observability address on 7445", g)
	}
	if g := decode("targets/kubedosd-w-2.json"); len(g) != 0 {
		t.Errorf("w-2 (not enrolled) is scraped: %+v", g)
	}
	if g := decode(FileHubTarget); len(g) != 1 || g[0].Targets[0] != "10.78.0.10:7446" {
		t.Errorf("hub targets %+v, want the master's wg-observability address on 7446", g)
	}
	if g := decode(FileExporters); len(g) != 3 || g[2].Targets[0] != "10.78.0.41:9100" {
		t.Errorf("node exporter targets %+v, want the 3 enrolled nodes", g)
	}

	var cfg promConfig
	if err := yaml.Unmarshal(files[FileConfig], &cfg); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]scrapeJob{}
	for _, j := range cfg.ScrapeConfigs {
		jobs[j.JobName] = j
	}
	w1 := jobs["kubedosd/w-1"]
	if w1.Scheme != "https" || w1.TLSConfig == nil || w1.TLSConfig.ServerName != "w-1" || w1.TLSConfig.CertFile != DefaultDir+"/"+FileReaderCert ||
		len(w1.RelabelConfigs) != 1 || w1.RelabelConfigs[0] != (relabelConfig{TargetLabel: "job", Replacement: JobKubedosd}) ||
		w1.FileSDConfigs[0].Files[0] != DefaultDir+"/targets/kubedosd-w-1.json" {
		t.Errorf("w-1's job: %+v", w1)
	}
	if h := jobs[JobHub]; h.TLSConfig == nil || h.TLSConfig.ServerName != api.HubServerName {
		t.Errorf("hub job: %+v", h)
	}
	if p := jobs[JobPrometheus]; len(p.StaticConfigs) != 1 || p.StaticConfigs[0].Targets[0] != "10.78.0.11:9090" {
		t.Errorf("prometheus job: %+v", p)
	}
	if len(cfg.ScrapeConfigs) != len(s.Topology.Nodes)+4 {
		t.Errorf("%d jobs, want one per node + hub, node exporter, prometheus, etcd", len(cfg.ScrapeConfigs))
	}
	if e := jobs[JobEtcd]; len(e.FileSDConfigs) != 1 || e.FileSDConfigs[0].Files[0] != DefaultDir+"/"+FileEtcd || e.TLSConfig != nil {
		t.Errorf("etcd job: %+v", e)
	}
	if cfg.Global.ScrapeInterval != "15s" || cfg.Global.ScrapeTimeout != "10s" || cfg.Global.ExternalLabels["cluster"] != "reference" {
		t.Errorf("global %+v", cfg.Global)
	}

	drop := string(files[FileDropIn])
	for _, want := range []string{"--storage.tsdb.path=/data/prometheus", "--storage.tsdb.retention.time=15d",
		"--storage.tsdb.retention.size=32GB", "--web.listen-address=10.78.0.11:9090", "--config.file=" + DefaultDir + "/prometheus.yml", "ExecStart=\n"} {
		if !strings.Contains(drop, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, drop)
		}
	}

	// The same inputs give the same bytes (convergence compares them).
	again, err := Generate(s, []string{"w-1", "prometheus", "master"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if string(again[name]) != string(b) {
			t.Errorf("%s differs between two runs (or with the enrolled list reordered)", name)
		}
	}
}

func TestGenerateRetentionFromSpec(t *testing.T) {
	s := reference(t)
	s.Workloads.Observability.Retention = &spec.Retention{Time: "36h", SizeGiB: 5}
	s.Workloads.Observability.ScrapeInterval = "30s"
	files, err := Generate(s, nil, Options{Dir: "/srv/obs", DataDir: "/data/p"})
	if err != nil {
		t.Fatal(err)
	}
	drop := string(files[FileDropIn])
	for _, want := range []string{"--storage.tsdb.retention.time=36h", "--storage.tsdb.retention.size=5GB", "--storage.tsdb.path=/data/p",
		"--config.file=/srv/obs/prometheus.yml", "RequiresMountsFor=/srv/obs /data/p"} {
		if !strings.Contains(drop, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, drop)
		}
	}
	if !strings.Contains(string(files[FileConfig]), "scrape_interval: 30s") {
		t.Errorf("config does not scrape every 30s:\n%s", files[FileConfig])
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tt := range []struct {
		name     string
		mutate   func(s *spec.ClusterSpec)
		enrolled []string
		msg      string
	}{
		{"no prometheus node", func(s *spec.ClusterSpec) {
			doc, _ := spec.Parse(examples.Local)
			*s = *spec.WithDefaults(doc.Spec)
			s.Topology.Nodes = slices.DeleteFunc(s.Topology.Nodes, func(n spec.Node) bool { return n.Role == spec.RolePrometheus })
		}, nil, "no node with role prometheus"},
		{"no observability plane", func(s *spec.ClusterSpec) { delete(s.Networking.Planes, spec.PlaneObservability) }, nil, "wg-observability only"},
		{"enrolled node not in the spec", func(*spec.ClusterSpec) {}, []string{"w-1", "w-9"}, `"w-9" is not in cluster reference`},
		{"bad retention", func(s *spec.ClusterSpec) { s.Workloads.Observability.Retention = &spec.Retention{Time: "forever"} }, nil, "retention.time"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := reference(t)
			tt.mutate(s)
			_, err := Generate(s, tt.enrolled, Options{})
			if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err %v, want ErrSpec containing %q", err, tt.msg)
			}
		})
	}
}

func TestPromDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{15 * 24 * time.Hour, "15d"}, {36 * time.Hour, "36h"}, {90 * time.Minute, "90m"}, {15 * time.Second, "15s"}, {10 * time.Second, "10s"}} {
		if got := promDuration(tt.d); got != tt.want {
			t.Errorf("promDuration(%s) = %s, want %s", tt.d, got, tt.want)
		}
	}
}

// With Kubernetes, the enrolled API servers and each kubelet are scraped
// with the Kubernetes credential, each verified against its own name.
func TestGenerateKubernetes(t *testing.T) {
	s := reference(t)
	without, err := Generate(s, []string{"cp-1", "w-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(s, []string{"cp-1", "w-1"}, Options{Kubernetes: true})
	if err != nil {
		t.Fatal(err)
	}
	// kube-apiserver's file and one per worker.
	if got, want := len(files)-len(without), 1+3; got != want {
		t.Errorf("%d more files with Kubernetes, want %d: %v", got, want, files.Names())
	}
	var g []targetGroup
	if err := json.Unmarshal(files[FileAPIServer], &g); err != nil || len(g) != 1 || g[0].Targets[0] != "10.78.0.31:6443" || g[0].Labels["node"] != "cp-1" {
		t.Errorf("API servers (cp-1 enrolled, cp-2 and cp-3 not): %s, %v", files[FileAPIServer], err)
	}
	if err := json.Unmarshal(files["targets/kubelet-w-1.json"], &g); err != nil || len(g) != 1 || g[0].Targets[0] != "10.78.0.41:10250" {
		t.Errorf("w-1's kubelet: %s, %v", files["targets/kubelet-w-1.json"], err)
	}
	if string(files["targets/kubelet-w-2.json"]) != "[]\n" {
		t.Errorf("w-2 (not enrolled) kubelet scraped: %s", files["targets/kubelet-w-2.json"])
	}
	var cfg promConfig
	if err := yaml.Unmarshal(files[FileConfig], &cfg); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]scrapeJob{}
	for _, j := range cfg.ScrapeConfigs {
		jobs[j.JobName] = j
	}
	a := jobs[JobAPIServer]
	if a.TLSConfig == nil || a.TLSConfig.ServerName != "kubernetes" || a.TLSConfig.CAFile != DefaultDir+"/"+FileKubeCA ||
		a.TLSConfig.CertFile != DefaultDir+"/"+FileKubeCert || a.TLSConfig.KeyFile != DefaultDir+"/"+FileReaderKey {
		t.Errorf("API server job: %+v", a)
	}
	k := jobs["kubelet/w-2"]
	if k.TLSConfig == nil || k.TLSConfig.ServerName != "w-2" || len(k.RelabelConfigs) != 1 || k.RelabelConfigs[0].Replacement != JobKubelet {
		t.Errorf("w-2's kubelet job: %+v", k)
	}
	if _, ok := jobs["kubelet/cp-1"]; ok {
		t.Error("a kubelet job for a control-plane node, which runs none")
	}
	// Kubernetes off in the spec: nothing of it, whatever the option.
	s.Workloads.Kubernetes.Enabled = false
	off, err := Generate(s, []string{"cp-1"}, Options{Kubernetes: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := off[FileAPIServer]; ok || strings.Contains(string(off[FileConfig]), JobAPIServer) {
		t.Error("API server scraped with Kubernetes off")
	}
}

// promtool is Prometheus's own checker, an oracle independent of this
// package; Debian's prometheus package ships it (scripts/setup.sh installs
// it, so CI runs these).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: install Debian's prometheus package (scripts/setup.sh does) to check the configuration and test the rules")
	}
	return p
}

func writeFiles(t *testing.T, dir string, files Files) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPromtoolCheckConfig(t *testing.T) {
	bin := promtool(t)
	dir := t.TempDir()
	s := reference(t)
	files, err := Generate(s, allNodes(s), Options{Dir: dir, Kubernetes: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, files)
	// promtool checks that the TLS files named exist; they come from the
	// hub at run time, not from here.
	writeFiles(t, dir, Files{FileCA: nil, FileReaderCert: nil, FileReaderKey: nil, FileKubeCA: nil, FileKubeCert: nil})
	out, err := exec.Command(bin, "check", "config", filepath.Join(dir, FileConfig)).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s\n--- prometheus.yml\n%s", err, out, files[FileConfig])
	}
	if !strings.Contains(string(out), "SUCCESS: 23 rules found") {
		t.Errorf("promtool did not read the rules:\n%s", out)
	}
	// And it refuses a broken one, so the check above means something.
	bad := strings.Replace(string(files[FileConfig]), "job_name: kubedosd/w-1", "job_name: kubedosd/w-2", 1)
	writeFiles(t, dir, Files{FileConfig: []byte(bad)})
	if out, err := exec.Command(bin, "check", "config", filepath.Join(dir, FileConfig)).CombinedOutput(); err == nil {
		t.Errorf("promtool accepted two jobs named kubedosd/w-2:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	bin := promtool(t)
	tests, err := os.ReadFile(filepath.Join("testdata", "rules_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// Every alert has a test.
	tested := map[string]bool{}
	for _, m := range regexp.MustCompile(`alertname: (\w+)`).FindAllStringSubmatch(string(tests), -1) {
		tested[m[1]] = true
	}
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\w+)`).FindAllStringSubmatch(string(Rules()), -1)
	if len(alerts) < 20 {
		t.Fatalf("%d alerts found in the rules", len(alerts))
	}
	for _, m := range alerts {
		if !tested[m[1]] {
			t.Errorf("alert %s has no test in testdata/rules_test.yml", m[1])
		}
	}
	dir := t.TempDir()
	writeFiles(t, dir, Files{"kubedos.rules.yml": Rules(), "rules_test.yml": tests})
	out, err := exec.Command(bin, "test", "rules", filepath.Join(dir, "rules_test.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

func TestDashboardsNode(t *testing.T) {
	ref := reference(t)
	if n, ok := DashboardsNode(ref); !ok || n.Name != "grafana" {
		t.Errorf("reference: %v %v, want the grafana node", n.Name, ok)
	}
	doc, err := spec.Parse(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	local := spec.WithDefaults(doc.Spec)
	if n, ok := DashboardsNode(local); !ok || n.Name != "mon" {
		t.Errorf("local: %v %v, want the prometheus node mon", n.Name, ok)
	}
	local.Workloads.Observability.Prometheus = false
	if _, ok := DashboardsNode(local); ok {
		t.Error("dashboards without Prometheus")
	}
}
