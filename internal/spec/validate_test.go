package spec

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/errdefs"
)

func mustParse(t *testing.T, data []byte) *ClusterSpec {
	t.Helper()
	doc, err := Parse(data)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return WithDefaults(doc.Spec)
}

func TestExamplesAreValid(t *testing.T) {
	for name, data := range map[string][]byte{"local": examples.Local, "reference": examples.Reference,
		"local-k8s": examples.LocalK8s, "local-ha": examples.LocalHA} {
		t.Run(name, func(t *testing.T) {
			if ps := Validate(mustParse(t, data)); len(ps) != 0 {
				t.Fatalf("example %s is invalid: %v", name, ps)
			}
		})
	}
}

func TestReferenceTopology(t *testing.T) {
	s := mustParse(t, examples.Reference)
	want := map[Role]int{RoleMaster: 1, RolePrometheus: 1, RoleGrafana: 1, RoleStorage: 1,
		RoleEtcd: 3, RoleControlPlane: 3, RoleWorker: 3, RoleLoadBalancer: 3}
	for role, n := range want {
		if got := s.CountRole(role); got != n {
			t.Errorf("reference has %d %s nodes, want %d", got, role, n)
		}
	}
	if s.Topology.APIVIP == "" {
		t.Error("reference has no API VIP")
	}
}

// TestAPIVIPHolders: the load balancers hold the VIP when there are any,
// else the control planes; nobody without a VIP.
func TestAPIVIPHolders(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want Role
	}{{"reference", examples.Reference, RoleLoadBalancer}, {"local-ha", examples.LocalHA, RoleControlPlane},
		{"local-k8s", examples.LocalK8s, ""}} {
		if got := mustParse(t, c.data).APIVIPHolders(); got != c.want {
			t.Errorf("%s: the VIP is held by %q, want %q", c.name, got, c.want)
		}
	}
}

// TestValidateRules has one failing case per rule: each mutates the valid
// reference spec and expects a problem at a path with a message fragment.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name, path, msg string
		mutate          func(s *ClusterSpec)
	}{
		{"api version", "apiVersion", "must be", func(s *ClusterSpec) { s.APIVersion = "v1" }},
		{"kind", "kind", "must be", func(s *ClusterSpec) { s.Kind = "Cluster" }},
		{"cluster name", "metadata.name", "DNS label", func(s *ClusterSpec) { s.Metadata.Name = "Bad_Name" }},
		{"suite", "os.suite", "suite", func(s *ClusterSpec) { s.OS.Suite = "Bookworm!" }},
		{"mirror", "os.mirror", "http(s) URL", func(s *ClusterSpec) { s.OS.Mirror = "ftp://x" }},
		{"architecture", "os.architecture", "amd64 or arm64", func(s *ClusterSpec) { s.OS.Architecture = "mips" }},
		{"package syntax", "os.packages[1]", "not a valid Debian package name", func(s *ClusterSpec) { s.OS.Packages[1] = "NfTables" }},
		{"node config role", "nodeConfig.robot", "unknown role", func(s *ClusterSpec) {
			s.NodeConfig = map[Role]RoleNodeConfig{"robot": {}}
		}},
		{"node config sysctl name", "nodeConfig.worker.sysctls.../etc/shadow", "not a kernel parameter", func(s *ClusterSpec) {
			s.NodeConfig = map[Role]RoleNodeConfig{RoleWorker: {Sysctls: map[string]string{"../etc/shadow": "1"}}}
		}},
		{"node config sysctl value", "nodeConfig.worker.sysctls.net.ipv4.ip_forward", "printable", func(s *ClusterSpec) {
			s.NodeConfig = map[Role]RoleNodeConfig{RoleWorker: {Sysctls: map[string]string{"net.ipv4.ip_forward": "1\n0"}}}
		}},
		{"package twice", "os.packages[1]", "listed twice", func(s *ClusterSpec) { s.OS.Packages[1] = s.OS.Packages[0] }},
		{"role package syntax", "os.rolePackages.worker[0]", "not a valid Debian package name", func(s *ClusterSpec) { s.OS.RolePackages[RoleWorker] = []string{"bad pkg"} }},
		{"role package unknown role", "os.rolePackages.dbserver", "unknown role", func(s *ClusterSpec) { s.OS.RolePackages["dbserver"] = []string{"mariadb-server"} }},
		{"pcr range", "trust.pcrs[0]", "0..23", func(s *ClusterSpec) { s.Trust.PCRs[0] = 24 }},
		{"pcr 7 required", "trust.pcrs", "PCR 7", func(s *ClusterSpec) { s.Trust.PCRs = []int{4, 11} }},
		{"tpm required", "trust.tpm", "TPM", func(s *ClusterSpec) { s.Trust.TPM = ptr(false) }},
		{"ek mode", "trust.ekPolicy.mode", "must be one of", func(s *ClusterSpec) { s.Trust.EKPolicy.Mode = "any" }},
		{"ek ca", "trust.ekPolicy.caFile", "required", func(s *ClusterSpec) { s.Trust.EKPolicy.Mode = EKCertificate }},
		{"ek window", "trust.ekPolicy.window", "duration", func(s *ClusterSpec) { s.Trust.EKPolicy.Mode = EKWindow }},
		{"ek hash", "trust.ekPolicy.registeredEKs[0].ek", "sha256", func(s *ClusterSpec) {
			s.Trust.EKPolicy.RegisteredEKs = []RegisteredEK{{Node: s.Topology.Nodes[0].Name, EK: "abc"}}
		}},
		{"ek without a node", "trust.ekPolicy.registeredEKs[0].node", "must name a node", func(s *ClusterSpec) {
			s.Trust.EKPolicy.RegisteredEKs = []RegisteredEK{{EK: strings.Repeat("ab", 32)}}
		}},
		{"ek twice", "trust.ekPolicy.registeredEKs[1].ek", "one TPM is one node", func(s *ClusterSpec) {
			s.Trust.EKPolicy.RegisteredEKs = []RegisteredEK{{Node: s.Topology.Nodes[0].Name, EK: strings.Repeat("ab", 32)},
				{Node: s.Topology.Nodes[1].Name, EK: strings.Repeat("ab", 32)}}
		}},
		{"cert lifetime", "trust.certificateLifetime", "5m and 720h", func(s *ClusterSpec) { s.Trust.CertificateLifetime = "1s" }},
		{"revocation max age short", "trust.revocationMaxAge", "1m0s and 24h0m0s", func(s *ClusterSpec) { s.Trust.RevocationMaxAge = "30s" }},
		{"revocation max age long", "trust.revocationMaxAge", "1m0s and 24h0m0s", func(s *ClusterSpec) { s.Trust.RevocationMaxAge = "48h" }},
		{"revocation max age junk", "trust.revocationMaxAge", `got "soon"`, func(s *ClusterSpec) { s.Trust.RevocationMaxAge = "soon" }},
		{"lan cidr", "networking.lan.cidr", "must be a CIDR", func(s *ClusterSpec) { s.Networking.LAN.CIDR = "10.10.10.0" }},
		{"lan host bits", "networking.lan.cidr", "host bits", func(s *ClusterSpec) { s.Networking.LAN.CIDR = "10.10.10.5/24" }},
		{"gateway outside", "networking.lan.gateway", "not a host address inside", func(s *ClusterSpec) { s.Networking.LAN.Gateway = "10.11.0.1" }},
		{"plane overlaps lan", "networking.planes.kubernetes.cidr", "overlaps networking.lan.cidr", func(s *ClusterSpec) {
			s.Networking.Planes[PlaneKubernetes] = PlaneSpec{CIDR: "10.10.0.0/16", Port: 51822}
		}},
		{"planes overlap", "networking.planes.observability.cidr", "overlaps networking.planes.control.cidr", func(s *ClusterSpec) {
			s.Networking.Planes[PlaneObservability] = PlaneSpec{CIDR: "10.77.0.0/24", Port: 51821}
		}},
		{"plane missing", "networking.planes.kubernetes", "must be declared", func(s *ClusterSpec) { delete(s.Networking.Planes, PlaneKubernetes) }},
		{"plane unknown", "networking.planes.storage", "unknown plane", func(s *ClusterSpec) { s.Networking.Planes["storage"] = PlaneSpec{CIDR: "10.80.0.0/24", Port: 1} }},
		{"plane port range", "networking.planes.control.port", "1..65535", func(s *ClusterSpec) {
			s.Networking.Planes[PlaneControl] = PlaneSpec{CIDR: "10.77.0.0/24", Port: 70000}
		}},
		{"plane port reused", "networking.planes.observability.port", "already used", func(s *ClusterSpec) {
			s.Networking.Planes[PlaneObservability] = PlaneSpec{CIDR: "10.78.0.0/24", Port: 51820}
		}},
		{"no nodes", "topology.nodes", "at least one", func(s *ClusterSpec) { s.Topology.Nodes = nil }},
		{"duplicate name", "topology.nodes[2].name", "already used", func(s *ClusterSpec) { s.Topology.Nodes[2].Name = s.Topology.Nodes[1].Name }},
		{"bad name", "topology.nodes[1].name", "DNS label", func(s *ClusterSpec) { s.Topology.Nodes[1].Name = "Prom_1" }},
		{"hub's name", "topology.nodes[1].name", "reserved", func(s *ClusterSpec) { s.Topology.Nodes[1].Name = HubName }},
		{"unknown role", "topology.nodes[1].role", "unknown role", func(s *ClusterSpec) { s.Topology.Nodes[1].Role = "db" }},
		{"duplicate vmid", "topology.nodes[3].vmid", "already used", func(s *ClusterSpec) { s.Topology.Nodes[3].VMID = s.Topology.Nodes[0].VMID }},
		{"vmid range", "topology.nodes[0].vmid", "100..", func(s *ClusterSpec) { s.Topology.Nodes[0].VMID = 99 }},
		{"duplicate address", "topology.nodes[4].address", "already used", func(s *ClusterSpec) { s.Topology.Nodes[4].Address = s.Topology.Nodes[0].Address }},
		{"address is gateway", "topology.nodes[4].address", "already used by networking.lan.gateway", func(s *ClusterSpec) { s.Topology.Nodes[4].Address = s.Networking.LAN.Gateway }},
		{"address outside lan", "topology.nodes[4].address", "not a host address inside", func(s *ClusterSpec) { s.Topology.Nodes[4].Address = "192.168.1.4" }},
		{"broadcast address", "topology.nodes[4].address", "not a host address inside", func(s *ClusterSpec) { s.Topology.Nodes[4].Address = "10.10.10.255" }},
		{"cpus", "topology.nodes[0].cpus", "1..256", func(s *ClusterSpec) { s.Topology.Nodes[0].CPUs = 1000 }},
		{"memory", "topology.nodes[0].memoryMiB", "512..", func(s *ClusterSpec) { s.Topology.Nodes[0].MemoryMiB = 64 }},
		{"disk", "topology.nodes[0].diskGiB", "4..", func(s *ClusterSpec) { s.Topology.Nodes[0].DiskGiB = 1 }},
		{"plane address outside", "topology.nodes[1].planeAddresses.control", "not a host address inside", func(s *ClusterSpec) {
			s.Topology.Nodes[1].PlaneAddresses = map[Plane]string{PlaneControl: "10.99.0.1"}
		}},
		{"plane address duplicate", "topology.nodes[1].planeAddresses.control", "already used", func(s *ClusterSpec) {
			s.Topology.Nodes[1].PlaneAddresses = map[Plane]string{PlaneControl: "10.77.0.10"}
		}},
		{"plane address does not fit", "topology.nodes[4].planeAddresses.control", "does not fit", func(s *ClusterSpec) {
			s.Networking.Planes[PlaneControl] = PlaneSpec{CIDR: "10.77.0.0/28", Port: 51820}
		}},
		{"two masters", "topology.nodes", "exactly one node must have role master, found 2", func(s *ClusterSpec) { s.Topology.Nodes[1].Role = RoleMaster }},
		{"no master", "topology.nodes", "found 0", func(s *ClusterSpec) { s.Topology.Nodes[0].Role = RoleWorker }},
		{"even etcd", "topology.nodes", "role etcd needs an odd count", func(s *ClusterSpec) { s.Topology.Nodes[4].Role = RoleWorker }},
		{"even control plane", "topology.nodes", "role controlplane needs an odd count", func(s *ClusterSpec) { s.Topology.Nodes[7].Role = RoleWorker }},
		{"vip without load balancers, one control plane", "topology.apiVIP", "two or more of either (found 1 controlplane)", func(s *ClusterSpec) {
			cps := 0
			for i := range s.Topology.Nodes {
				switch s.Topology.Nodes[i].Role {
				case RoleLoadBalancer:
					s.Topology.Nodes[i].Role = RoleWorker
				case RoleControlPlane:
					if cps++; cps > 1 {
						s.Topology.Nodes[i].Role = RoleWorker
					}
				}
			}
		}},
		{"lb without vip", "topology.apiVIP", "is required", func(s *ClusterSpec) { s.Topology.APIVIP = "" }},
		{"vip is gateway", "topology.apiVIP", "already used by networking.lan.gateway", func(s *ClusterSpec) { s.Topology.APIVIP = s.Networking.LAN.Gateway }},
		{"vip is lan edge", "topology.apiVIP", "not a host address inside", func(s *ClusterSpec) { s.Topology.APIVIP = "10.10.10.0" }},
		{"vip not an address", "topology.apiVIP", "must be an IP address", func(s *ClusterSpec) { s.Topology.APIVIP = "api.example" }},
		{"one lb", "topology.nodes", "no peer to hand the API VIP to", func(s *ClusterSpec) {
			for i := range s.Topology.Nodes[:len(s.Topology.Nodes)-1] {
				if s.Topology.Nodes[i].Role == RoleLoadBalancer {
					s.Topology.Nodes[i].Role = RoleWorker
				}
			}
		}},
		{"vip outside lan", "topology.apiVIP", "not a host address inside", func(s *ClusterSpec) { s.Topology.APIVIP = "10.11.0.5" }},
		{"vip taken", "topology.apiVIP", "already used", func(s *ClusterSpec) { s.Topology.APIVIP = s.Topology.Nodes[2].Address }},
		{"data fs", "storage.data.filesystem", "ext4 or xfs", func(s *ClusterSpec) { s.Storage.Data.Filesystem = "btrfs" }},
		{"zfs needs contrib", "storage.zfs.enabled", "contrib", func(s *ClusterSpec) { s.Storage.ZFS.Enabled = true }},
		{"zfs pool node", "storage.zfs.pools[0].nodes[0]", "no node named", func(s *ClusterSpec) {
			s.OS.Components = []string{"main", "contrib"}
			s.Storage.ZFS = ZFS{Enabled: true, Pools: []ZFSPool{{Name: "tank", Nodes: []string{"nas"}}}}
		}},
		{"zfs pools while disabled", "storage.zfs.pools", "enabled is false", func(s *ClusterSpec) {
			s.Storage.ZFS = ZFS{Pools: []ZFSPool{{Name: "tank", Nodes: []string{"storage"}}}}
		}},
		{"ceph plane", "storage.ceph.plane", "explicitly", func(s *ClusterSpec) { s.Storage.Ceph = Ceph{Enabled: true, Nodes: []string{"storage"}} }},
		{"ceph nodes", "storage.ceph.nodes", "listed explicitly", func(s *ClusterSpec) { s.Storage.Ceph = Ceph{Enabled: true, Plane: PlaneKubernetes} }},
		{"ceph failure domain", "storage.ceph.nodes[0]", "failureDomain must be explicit", func(s *ClusterSpec) {
			s.Topology.Nodes[3].FailureDomain = ""
			s.Storage.Ceph = Ceph{Enabled: true, Plane: PlaneKubernetes, Nodes: []string{"storage"}}
		}},
		{"k8s version", "workloads.kubernetes.version", "kubedos builds Kubernetes " + KubernetesVersion, func(s *ClusterSpec) { s.Workloads.Kubernetes.Version = "latest" }},
		{"k8s other release", "workloads.kubernetes.version", "leave the version empty", func(s *ClusterSpec) { s.Workloads.Kubernetes.Version = "1.30.4" }},
		{"k8s version with v", "workloads.kubernetes.version", `got "v` + KubernetesVersion, func(s *ClusterSpec) { s.Workloads.Kubernetes.Version = "v" + KubernetesVersion }},
		{"k8s needs its plane", "workloads.kubernetes.enabled", "networking.planes.kubernetes", func(s *ClusterSpec) {
			delete(s.Networking.Planes, PlaneKubernetes)
			s.Storage.Ceph = Ceph{}
		}},
		{"pod cidr too small", "workloads.kubernetes.podCIDR", "/16 or larger", func(s *ClusterSpec) { s.Workloads.Kubernetes.PodCIDR = "10.244.0.0/17" }},
		{"pod cidr IPv6", "workloads.kubernetes.podCIDR", "IPv4", func(s *ClusterSpec) { s.Workloads.Kubernetes.PodCIDR = "fd00:10:244::/48" }},
		{"k8s needs control plane", "workloads.kubernetes.enabled", "controlplane", func(s *ClusterSpec) {
			for i := range s.Topology.Nodes {
				if s.Topology.Nodes[i].Role == RoleControlPlane {
					s.Topology.Nodes[i].Role = RoleWorker
				}
			}
		}},
		{"pod cidr overlaps plane", "workloads.kubernetes.podCIDR", "overlaps networking.planes.control.cidr", func(s *ClusterSpec) { s.Workloads.Kubernetes.PodCIDR = "10.77.0.0/16" }},
		{"service overlaps pod", "workloads.kubernetes.serviceCIDR", "overlaps podCIDR", func(s *ClusterSpec) { s.Workloads.Kubernetes.ServiceCIDR = "10.244.0.0/20" }},
		{"prometheus node", "workloads.observability.prometheus", "role prometheus", func(s *ClusterSpec) { s.Topology.Nodes[1].Role = RoleWorker }},
		{"grafana node", "workloads.observability.grafana", "role grafana", func(s *ClusterSpec) { s.Topology.Nodes[2].Role = RoleWorker }},
		{"target default", "targets.default", "qemu, proxmox or iso", func(s *ClusterSpec) { s.Targets.Default = "aws" }},
		{"proxmox missing", "targets.proxmox", "must be configured", func(s *ClusterSpec) { s.Targets.Default = TargetProxmox; s.Targets.Proxmox = nil }},
		{"proxmox url", "targets.proxmox.apiURL", "https URL", func(s *ClusterSpec) { s.Targets.Proxmox.APIURL = "http://pve:8006" }},
		{"proxmox bridge", "targets.proxmox.bridge", "required", func(s *ClusterSpec) { s.Targets.Proxmox.Bridge = "" }},
		{"proxmox fingerprint", "targets.proxmox.fingerprint", "SHA-256 certificate fingerprint", func(s *ClusterSpec) { s.Targets.Proxmox.Fingerprint = "AB:CD" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, examples.Reference)
			tt.mutate(s)
			ps := Validate(s)
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					return
				}
			}
			t.Fatalf("want a problem at %s containing %q, got %v", tt.path, tt.msg, ps)
		})
	}
}

func TestValidateHasNoSideEffects(t *testing.T) {
	s := mustParse(t, examples.Reference)
	before := deepCopy(s)
	s.Topology.Nodes[0].Name = "BAD"
	Validate(s)
	s.Topology.Nodes[0].Name = before.Topology.Nodes[0].Name
	if ps := Validate(s); len(ps) != 0 {
		t.Fatalf("validating changed the spec: %v", ps)
	}
}

func TestFiveMistakesAllReportedWithLines(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "five-mistakes.yaml"))
	var ps Problems
	if !errors.As(err, &ps) || !errors.Is(err, ErrInvalid) || !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []struct {
		line int
		path string
	}{
		{9, "networking.planes.observability.cidr"}, // overlaps the LAN
		{14, "topology.nodes[1].vmid"},              // duplicate VMID
		{15, "topology.nodes[2].name"},              // duplicate name
		{15, "topology.nodes[2].address"},           // outside the LAN
		{13, "topology.nodes"},                      // even control-plane count
	}
	if len(ps) != len(want) {
		t.Fatalf("want %d problems, got %d: %v", len(want), len(ps), ps)
	}
	for _, w := range want {
		found := false
		for _, p := range ps {
			if p.Path == w.path && p.Line == w.line && p.Column > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at %s line %d in %v", w.path, w.line, ps)
		}
	}
}
