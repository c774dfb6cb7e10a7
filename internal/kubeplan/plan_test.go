package kubeplan

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/spec"
)

func localK8s(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	doc, err := spec.Parse(examples.LocalK8s)
	if err != nil {
		t.Fatal(err)
	}
	return spec.WithDefaults(doc.Spec)
}

func TestForLocalK8s(t *testing.T) {
	s := localK8s(t)
	tests := []struct {
		node  string
		comps []Component
		check func(t *testing.T, p *Plan)
	}{
		{"master", nil, nil},
		{"cp-1", []Component{Etcd, APIServer, ControllerManager, Scheduler}, func(t *testing.T, p *Plan) {
			if p.NodeIP != "10.89.0.11" || p.APIServer != "https://10.89.0.11:6443" {
				t.Errorf("node IP %s, API server %s", p.NodeIP, p.APIServer)
			}
			// etcd on the LAN (the planes run through the master); alone,
			// it takes no peer, and clients only from the master (its
			// hub's snapshots). The stacked API server asks its own
			// member, over loopback.
			if !slices.Equal(p.EtcdServers, []string{"https://127.0.0.1:2379"}) || len(p.EtcdMembers) != 1 ||
				p.EtcdMembers[0] != (EtcdMember{"cp-1", "https://10.40.0.11:2380"}) || p.EtcdAddress != "10.40.0.11" ||
				len(p.LANAllows) != 1 || p.LANAllows[0].Port != EtcdClientPort || !slices.Equal(p.LANAllows[0].From, []string{"10.40.0.10"}) {
				t.Errorf("etcd %v %v %s %v", p.EtcdServers, p.EtcdMembers, p.EtcdAddress, p.LANAllows)
			}
			if p.NodePodCIDR != "" {
				t.Errorf("control plane has pod CIDR %s", p.NodePodCIDR)
			}
		}},
		{"w-1", []Component{Kubelet, Proxy}, func(t *testing.T, p *Plan) {
			if p.NodePodCIDR != "10.244.21.0/24" || p.ClusterDNS != "10.96.0.10" || p.EtcdServers != nil {
				t.Errorf("pod CIDR %s, DNS %s, etcd %v", p.NodePodCIDR, p.ClusterDNS, p.EtcdServers)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			p, err := For(s, tt.node)
			if err != nil {
				t.Fatal(err)
			}
			if tt.comps == nil {
				if p != nil {
					t.Fatalf("plan for %s: %+v", tt.node, p)
				}
				return
			}
			if !slices.Equal(p.Components, tt.comps) {
				t.Fatalf("components %v, want %v", p.Components, tt.comps)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
			files, err := Files(p, Host{LANInterface: "ens3"})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if !strings.HasPrefix(f.Path, Dir+"/") {
					t.Errorf("file %s outside %s", f.Path, Dir)
				}
			}
		})
	}
	if _, err := For(s, "nobody"); err == nil {
		t.Error("a node not in the spec has a plan")
	}
}

func TestValidateRefuses(t *testing.T) {
	s := localK8s(t)
	good, err := For(s, "w-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(p *Plan){
		"version":   func(p *Plan) { p.Version = "v1.99.0" },
		"node":      func(p *Plan) { p.Node = "w-1 --privileged" },
		"nodeIP":    func(p *Plan) { p.NodeIP = "10.0.0.1 --x" },
		"apiServer": func(p *Plan) { p.APIServer = "http://10.89.0.11:6443" },
		"pod CIDR":  func(p *Plan) { p.NodePodCIDR = "10.244.21.0/24,x" },
		"component": func(p *Plan) { p.Components = append(p.Components, "sh") },
		"domain":    func(p *Plan) { p.ClusterDomain = "cluster.local --v=9" },
	} {
		p := *good
		p.Components = slices.Clone(good.Components)
		mutate(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: a bad plan validated", name)
		}
		if _, err := Files(&p, Host{LANInterface: "ens3"}); err == nil {
			t.Errorf("%s: files rendered from a bad plan", name)
		}
	}
}

// The flags go through systemd's EnvironmentFile and $ARGS word splitting:
// a value with a space or quote would split or break it.
func TestArgsAreWords(t *testing.T) {
	s := localK8s(t)
	for _, node := range []string{"cp-1", "w-1"} {
		p, err := For(s, node)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Components {
			for _, a := range Args(p, c) {
				if strings.ContainsAny(a, " \t\n\"'\\$") || !strings.HasPrefix(a, "--") {
					t.Errorf("%s %s: argument %q", node, c, a)
				}
			}
		}
	}
}

func TestVersionMatchesKubeModule(t *testing.T) {
	mod, err := os.ReadFile("../../kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s.io/kubernetes (v\S+)`).FindSubmatch(mod)
	if m == nil || string(m[1]) != Version {
		t.Fatalf("kube/go.mod pins %q, kubeplan.Version is %s", m, Version)
	}
}

func TestUnits(t *testing.T) {
	for _, c := range Components {
		if debianUnit(c) {
			continue // lb_test.go: Debian's unit and our drop-in
		}
		u := Unit(c)
		if !strings.Contains(u, "EnvironmentFile="+EnvFile(c)) || !strings.Contains(u, "ConditionPathExists="+EnvFile(c)) {
			t.Errorf("%s unit:\n%s", c, u)
		}
		if strings.Contains(u, "[Install]") {
			t.Errorf("%s unit is enabled at boot: kubedosd starts it once its files exist", c)
		}
	}
	if !strings.Contains(ContainerdConfig(), PauseImage) {
		t.Error("containerd's sandbox image is not the baked pause image")
	}
}

func TestRolePackages(t *testing.T) {
	s := localK8s(t)
	for _, tt := range []struct {
		role spec.Role
		want []string
	}{
		{spec.RoleMaster, nil},
		{spec.RoleControlPlane, []string{"etcd-server"}}, // stacked etcd
		{spec.RoleWorker, []string{"catatonit", "containerd", "containernetworking-plugins", "nftables", "runc"}},
	} {
		if got := RolePackages(s, tt.role); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.role, got, tt.want)
		}
	}
	off := *s
	off.Workloads.Kubernetes.Enabled = false
	if got := RolePackages(&off, spec.RoleWorker); got != nil {
		t.Errorf("Kubernetes disabled: worker packages %v", got)
	}
}

func TestLinks(t *testing.T) {
	if got := Links([]Component{Etcd, APIServer, ControllerManager, Scheduler}); !slices.Equal(got,
		[]string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}) {
		t.Errorf("control plane links %v", got)
	}
	if got := Links([]Component{Etcd}); got != nil {
		t.Errorf("an etcd role links %v to kube: it needs no kube", got)
	}
	if got := Links([]Component{Kubelet, Proxy}); !slices.Equal(got, []string{"kubelet", "kube-proxy"}) {
		t.Errorf("worker links %v", got)
	}
}

// spec cannot import kubeplan, so it keeps the release as a string.
func TestSpecVersionMatches(t *testing.T) {
	if "v"+spec.KubernetesVersion != Version {
		t.Fatalf("spec.KubernetesVersion %s, kubeplan.Version %s", spec.KubernetesVersion, Version)
	}
}

// EtcdPeers, which convergence compares etcd's members with, are the
// members every member's plan starts etcd with.
func TestEtcdPeers(t *testing.T) {
	doc, err := spec.Parse(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	s := spec.WithDefaults(doc.Spec)
	peers, err := EtcdPeers(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 || peers[0].Name != "cp-1" || !strings.HasPrefix(peers[0].PeerURL, "https://") {
		t.Fatalf("peers %+v", peers)
	}
	for _, m := range peers {
		p, err := For(s, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.EtcdMembers, peers) {
			t.Errorf("%s's plan starts etcd with %+v, the peers are %+v", m.Name, p.EtcdMembers, peers)
		}
	}
}

// Dedicated etcd nodes take the client port from each other too: a
// replaced member asks the others' /health there before it decides to
// join (agent's etcdPrepare); dropped, it would find no running cluster
// and start a new one beside it.
func TestEtcdNodesReachEachOthersClientPort(t *testing.T) {
	doc, err := spec.Parse(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	p, err := For(spec.WithDefaults(doc.Spec), "etcd-2")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(p.LANAllows, func(a LANAllow) bool { return a.Port == EtcdClientPort })
	if i < 0 {
		t.Fatalf("no client port allowed: %+v", p.LANAllows)
	}
	for _, peer := range []string{"10.10.10.21", "10.10.10.23", "10.10.10.10", "10.10.10.32"} {
		if !slices.Contains(p.LANAllows[i].From, peer) {
			t.Errorf("client port not allowed from %s: %v", peer, p.LANAllows[i].From)
		}
	}
	if slices.Contains(p.LANAllows[i].From, "10.10.10.41") {
		t.Errorf("client port allowed from a worker: %v", p.LANAllows[i].From)
	}
}

// controlPlanePlans are the control planes' plans in spec order, each
// valid.
func controlPlanePlans(t *testing.T, s *spec.ClusterSpec) []*Plan {
	t.Helper()
	var out []*Plan
	for _, n := range s.Topology.Nodes {
		if n.Role != spec.RoleControlPlane {
			continue
		}
		p, err := For(s, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// Each API server asks one member, so only that member's client port
// takes it: an API server (or whoever holds its etcd client key) cannot
// reach the other members' data directly (DESIGN §11, least power). The
// pairing follows the spec, so a re-paired API server's new member opens
// to it with the same plan that moves it.
func TestEtcdClientPortOnlyFromPairedAPIServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		domain map[string]string
	}{
		{"reference", nil},
		{"domains crossed", map[string]string{"cp-1": "rack-c", "cp-3": "rack-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := reference(t)
			for i, n := range s.Topology.Nodes {
				if d, ok := tc.domain[n.Name]; ok {
					s.Topology.Nodes[i].FailureDomain = d
				}
			}
			clientsOf := map[string][]string{}
			for _, m := range EtcdNodes(s) {
				p, err := For(s, m.Name)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range p.LANAllows {
					if a.Port == EtcdClientPort {
						clientsOf[m.Address] = a.From
					}
				}
			}
			for _, p := range controlPlanePlans(t, s) {
				if len(p.EtcdServers) != 1 {
					t.Fatalf("%s asks %v, want one member", p.Node, p.EtcdServers)
				}
				n, _ := s.NodeByName(p.Node)
				for member, from := range clientsOf {
					paired := p.EtcdServers[0] == "https://"+member+":2379"
					if got := slices.Contains(from, n.Address); got != paired {
						t.Errorf("%s (asks %s): client port of %s open to it: %v, want %v (%v)", p.Node, p.EtcdServers[0], member, got, paired, from)
					}
				}
			}
		})
	}
}

// Where etcd runs on nodes of its own, each API server asks one member:
// one in its failure domain, else by its place among the control planes.
func TestAPIServerPairedWithOneEtcdMember(t *testing.T) {
	servers := func(s *spec.ClusterSpec) []string {
		t.Helper()
		var out []string
		for _, p := range controlPlanePlans(t, s) {
			out = append(out, strings.Join(p.EtcdServers, ","))
		}
		return out
	}
	// The reference: cp-N and etcd-N share rack N.
	s := reference(t)
	if got, want := servers(s), []string{"https://10.10.10.21:2379", "https://10.10.10.22:2379", "https://10.10.10.23:2379"}; !slices.Equal(got, want) {
		t.Errorf("reference: etcd servers %v, want %v", got, want)
	}
	// Domains crossed: each still finds its rack's member.
	s = reference(t)
	for i := range s.Topology.Nodes {
		switch s.Topology.Nodes[i].Name {
		case "cp-1":
			s.Topology.Nodes[i].FailureDomain = "rack-c"
		case "cp-3":
			s.Topology.Nodes[i].FailureDomain = "rack-a"
		}
	}
	if got, want := servers(s), []string{"https://10.10.10.23:2379", "https://10.10.10.22:2379", "https://10.10.10.21:2379"}; !slices.Equal(got, want) {
		t.Errorf("domains crossed: etcd servers %v, want %v", got, want)
	}
	// No failure domains, two members for three control planes: by place,
	// wrapping.
	s = reference(t)
	var nodes []spec.Node
	for _, n := range s.Topology.Nodes {
		n.FailureDomain = ""
		if n.Name != "etcd-3" {
			nodes = append(nodes, n)
		}
	}
	s.Topology.Nodes = nodes
	if got, want := servers(s), []string{"https://10.10.10.21:2379", "https://10.10.10.22:2379", "https://10.10.10.21:2379"}; !slices.Equal(got, want) {
		t.Errorf("no domains: etcd servers %v, want %v", got, want)
	}
}
