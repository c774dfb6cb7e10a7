package agent

import (
	"context"
	"net/netip"
	"sync"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/firewall"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
)

// Baseline is the node's firewall for its role and planes (DESIGN.md §5):
// the planes trusted, their WireGuard ports and the node's own services
// (node API, metrics, the hub and its console on the master, the dashboards on the grafana
// and prometheus nodes) open on the LAN. Before
// the first join the planes are the spec's defaults.
func Baseline(role string, ifcs []wg.Interface) firewall.Baseline {
	b := firewall.Baseline{TCPPorts: []int{api.NodeAPIPort, api.NodeMetricsPort}}
	switch spec.Role(role) {
	case spec.RoleMaster:
		// The hub and its web console: both authenticate every caller
		// by a cluster certificate (the console also by a one-time link
		// the hub minted for one).
		b.TCPPorts = append(b.TCPPorts, api.HubPort, api.ConsolePort)
	case spec.RoleControlPlane:
		// The API server authenticates every caller (client certificates
		// from the hub); operators reach it over the LAN.
		b.TCPPorts = append(b.TCPPorts, kubeplan.APIServerPort)
	case spec.RoleWorker:
		b.Pods = []string{kubeplan.PodBridge}
	case spec.RolePrometheus, spec.RoleGrafana:
		// The dashboards, to cluster certificates (reader and above):
		// operators read them from the LAN. Prometheus itself listens
		// on wg-observability only.
		b.TCPPorts = append(b.TCPPorts, api.DashboardsPort)
	}
	if len(ifcs) == 0 {
		for _, p := range spec.Planes {
			b.Planes = append(b.Planes, wg.InterfaceName(p))
			b.WireGuardPorts = append(b.WireGuardPorts, spec.DefaultPlanePorts[p])
		}
		return b
	}
	for _, ifc := range ifcs {
		b.Planes = append(b.Planes, ifc.Name)
		b.WireGuardPorts = append(b.WireGuardPorts, ifc.ListenPort)
	}
	return b
}

// WithLoadBalancer adds to b what a load balancer of plan lb needs: VRRP
// from the other load balancers (unicast) and haproxy's port on the VIP,
// from the LAN. The API servers behind it authenticate every caller.
func WithLoadBalancer(b firewall.Baseline, lb *kubeplan.LB) firewall.Baseline {
	if lb == nil {
		return b
	}
	for _, p := range lb.Peers {
		if a, err := netip.ParseAddr(p); err == nil {
			b.VRRPPeers = append(b.VRRPPeers, a)
		}
	}
	if vip, err := netip.ParseAddr(lb.VIP); err == nil {
		b.Services = append(b.Services, netip.AddrPortFrom(vip, kubeplan.APIServerPort))
	}
	return b
}

// WithOpenings adds to b what the node's Kubernetes plan opens: the
// load balancer's (WithLoadBalancer) and the LAN ports taken from listed
// sources only (etcd's peer and client ports).
func WithOpenings(b firewall.Baseline, o kubeplan.Openings) firewall.Baseline {
	b = WithLoadBalancer(b, o.LB)
	for _, a := range o.Allows {
		al := firewall.Allowed{Port: a.Port}
		for _, f := range a.From {
			if addr, err := netip.ParseAddr(f); err == nil {
				al.From = append(al.From, addr)
			}
		}
		if len(al.From) > 0 {
			b.Allowed = append(b.Allowed, al)
		}
	}
	return b
}

// nodeFirewall is the node's baseline as its planes and its Kubernetes
// plan's openings change; each change loads the whole table again, one at
// a time.
type nodeFirewall struct {
	role  string
	apply func(context.Context, firewall.Baseline) error

	mu   sync.Mutex
	ifcs []wg.Interface
	open kubeplan.Openings
}

func (f *nodeFirewall) setPlanes(ctx context.Context, ifcs []wg.Interface) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ifcs = ifcs
	return f.apply(ctx, WithOpenings(Baseline(f.role, f.ifcs), f.open))
}

func (f *nodeFirewall) setOpenings(ctx context.Context, o kubeplan.Openings) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open = o
	return f.apply(ctx, WithOpenings(Baseline(f.role, f.ifcs), f.open))
}
