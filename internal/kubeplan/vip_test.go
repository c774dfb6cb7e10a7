package kubeplan

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/spec"
)

func localHA(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	doc, err := spec.Parse(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	return spec.WithDefaults(doc.Spec)
}

// TestControlPlanesHoldTheVIP: with a VIP and no load balancer, each
// control plane runs keepalived beside its API server (which serves the
// VIP itself: no haproxy), all at one priority that readiness lowers,
// preempting, tracking the API server; the package follows the role.
func TestControlPlanesHoldTheVIP(t *testing.T) {
	s := localHA(t)
	for _, tt := range []struct {
		node     string
		priority int
		peers    []string
	}{
		{"cp-1", CPVRRPPriority, []string{"10.50.0.12", "10.50.0.13"}},
		{"cp-2", CPVRRPPriority, []string{"10.50.0.11", "10.50.0.13"}},
		{"cp-3", CPVRRPPriority, []string{"10.50.0.11", "10.50.0.12"}},
	} {
		t.Run(tt.node, func(t *testing.T) {
			p, err := For(s, tt.node)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Components, []Component{Etcd, APIServer, ControllerManager, Scheduler, Keepalived}) || p.LB == nil {
				t.Fatalf("components %v, lb %+v", p.Components, p.LB)
			}
			lb := p.LB
			if lb.VIP != "10.50.0.5" || lb.Track != APIServer || lb.Priority != tt.priority || lb.RouterID != 5 ||
				!slices.Equal(lb.Peers, tt.peers) || len(lb.Backends) != 0 {
				t.Errorf("lb %+v", lb)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			files, err := Files(p, testHost)
			if err != nil {
				t.Fatal(err)
			}
			var kc string
			for _, f := range files {
				switch f.Path {
				case HAProxyConfig:
					t.Errorf("a control plane holding the VIP got haproxy's configuration")
				case KeepalivedConfig:
					kc = string(f.Data)
				}
			}
			for _, want := range []string{"vrrp_track_process kube-apiserver {", "\tprocess kube-apiserver\n",
				"priority " + strconv.Itoa(tt.priority), "unicast_src_ip " + lbAddr(s, tt.node), "10.50.0.5/24 dev ens18",
				"track_process {\n\t\tkube-apiserver\n", "\tweight -100\n\tinit_file 1\n"} {
				if !strings.Contains(kc, want) {
					t.Errorf("keepalived.conf lacks %q:\n%s", want, kc)
				}
			}
			if strings.Contains(kc, "nopreempt") {
				t.Errorf("a control plane does not preempt: a ready one cannot take the VIP from a not-ready holder:\n%s", kc)
			}
		})
	}
	// etcd over the LAN between the three: peers from the other two,
	// clients from the other two members (a replacement's look at their
	// health) and the master (snapshots). Each API server asks only its
	// own member, over loopback, as kubeadm's stacked ones do.
	p, err := For(s, "cp-2")
	if err != nil {
		t.Fatal(err)
	}
	want := []LANAllow{{EtcdPeerPort, []string{"10.50.0.11", "10.50.0.13"}}, {EtcdClientPort, []string{"10.50.0.10", "10.50.0.11", "10.50.0.13"}}}
	if p.EtcdAddress != "10.50.0.12" || !slices.EqualFunc(p.LANAllows, want, func(a, b LANAllow) bool { return a.Port == b.Port && slices.Equal(a.From, b.From) }) ||
		!slices.Equal(p.EtcdServers, []string{"https://127.0.0.1:2379"}) {
		t.Errorf("etcd address %s, allows %v, servers %v", p.EtcdAddress, p.LANAllows, p.EtcdServers)
	}
	args := strings.Join(Args(p, Etcd), " ")
	for _, want := range []string{"--listen-peer-urls=https://10.50.0.12:2380", "--listen-client-urls=https://10.50.0.12:2379,https://127.0.0.1:2379",
		"--initial-cluster=cp-1=https://10.50.0.11:2380,cp-2=https://10.50.0.12:2380,cp-3=https://10.50.0.13:2380"} {
		if !strings.Contains(args, want) {
			t.Errorf("etcd args lack %s: %s", want, args)
		}
	}
	if got := RolePackages(s, spec.RoleControlPlane); !slices.Equal(got, []string{"etcd-server", "keepalived"}) {
		t.Errorf("controlplane packages %v", got)
	}
	w, err := For(s, "w-1")
	if err != nil || w.LB != nil || slices.Contains(w.Components, Keepalived) {
		t.Errorf("w-1 holds the VIP: %+v %v", w, err)
	}
}

// A plan that mixes the two ways of holding the VIP is refused: keepalived
// tracking haproxy with no haproxy (the VIP would never be held), haproxy
// with keepalived tracking the API server, backends without haproxy.
func TestValidateRefusesMixedVIP(t *testing.T) {
	good, err := For(localHA(t), "cp-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(p *Plan){
		"tracks haproxy, none runs": func(p *Plan) { p.LB.Track = HAProxy; p.LB.Backends = []Backend{{"cp-1", "10.50.0.11"}} },
		"haproxy, tracks apiserver": func(p *Plan) { p.Components = append(p.Components, HAProxy) },
		"backends without haproxy":  func(p *Plan) { p.LB.Backends = []Backend{{"cp-2", "10.50.0.12"}} },
		"tracks something else":     func(p *Plan) { p.LB.Track = "sshd" },
		"keepalived, no lb":         func(p *Plan) { p.LB = nil },
		"lb, no keepalived":         func(p *Plan) { p.Components = p.Components[:4] },
		"etcd allow not etcd's":     func(p *Plan) { p.LANAllows[0].Port = 22 },
		"etcd allow from a name":    func(p *Plan) { p.LANAllows[0].From = []string{"cp-2"} },
		"etcd allow from nobody":    func(p *Plan) { p.LANAllows[1].From = nil },
		"etcd address":              func(p *Plan) { p.EtcdAddress = "10.50.0.11 --x" },
	} {
		p := *good
		lb := *good.LB
		p.LB, p.Components = &lb, slices.Clone(good.Components)
		p.LANAllows = []LANAllow{{good.LANAllows[0].Port, slices.Clone(good.LANAllows[0].From)}, {good.LANAllows[1].Port, slices.Clone(good.LANAllows[1].From)}}
		mutate(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: a bad plan validated", name)
		}
	}
}

func lbAddr(s *spec.ClusterSpec, node string) string {
	n, _ := s.NodeByName(node)
	return n.Address
}

// The controllers' leader election is slowed for slow control planes,
// with lease > renew deadline > retry period as client-go requires.
func TestLeaderElectionTiming(t *testing.T) {
	p, err := For(localHA(t), "cp-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Component{ControllerManager, Scheduler} {
		args := strings.Join(Args(p, c), " ")
		for _, want := range []string{"--leader-elect=true", "--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=40s", "--leader-elect-retry-period=8s"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s lacks %s: %s", c, want, args)
			}
		}
	}
}
