// Package wg is the WireGuard planes (DESIGN.md §5): the interface and peer
// set each node gets from the spec and the hub's registry — the master is
// the hub of every plane, every other node has the master as its one peer —
// plane keys on the node's state partition, and applying a plane to a Linux
// kernel interface.
package wg

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// Keepalive is the persistent keepalive, in seconds, a node sends the
// master: it keeps the LAN's NAT and conntrack state open and lets the
// master reach a node that has not sent anything yet.
const Keepalive = 25

// Interface is one plane on one node, ready to apply.
type Interface struct {
	Plane spec.Plane `json:"plane"`
	// Name is the Linux interface (InterfaceName).
	Name string `json:"interface"`
	// Address is the node's plane address with the plane's prefix length.
	Address    string `json:"address"`
	ListenPort int    `json:"listenPort"`
	Peers      []Peer `json:"peers"`
	// Forward is set on the master: it routes between the nodes of the
	// plane, which reach each other through it.
	Forward bool `json:"forward,omitempty"`
	// Routes are prefixes beyond the plane's own reached through this
	// interface: on the kubernetes plane, the pods' addresses (each
	// kubelet node's /24 is allowed to that node's peer on the master,
	// and the whole pod CIDR to the master's peer everywhere else).
	Routes []string `json:"routes,omitempty"`
}

// Peer is one WireGuard peer of an interface.
type Peer struct {
	Name      string `json:"name"`
	PublicKey string `json:"publicKey"`
	// Endpoint is host:port on the LAN.
	Endpoint         string   `json:"endpoint,omitempty"`
	AllowedIPs       []string `json:"allowedIPs"`
	KeepaliveSeconds int      `json:"keepaliveSeconds,omitempty"`
}

// Member is a node allowed on the planes — enrolled, not revoked — with the
// public key it registered for each plane.
type Member struct {
	Name string
	Keys map[spec.Plane]string
}

// InterfaceName is the Linux interface of a plane. "wg-observability" is
// one byte over the kernel's 15-byte limit, so that plane is wg-obs.
func InterfaceName(p spec.Plane) string {
	if p == spec.PlaneObservability {
		return "wg-obs"
	}
	return "wg-" + string(p)
}

// Render is self's interfaces, one per declared plane in spec.Planes order.
// The master peers with every other member that has a key for the plane
// (allowed its /32 or /128); any other node peers with the master alone
// (allowed the whole plane, so traffic to other nodes goes through it). A
// member without a key for a plane is left out of it: it has not joined.
func Render(s *spec.ClusterSpec, self string, members []Member) ([]Interface, error) {
	me, ok := s.NodeByName(self)
	if !ok {
		return nil, fmt.Errorf("node %q is not in cluster %s", self, s.Metadata.Name)
	}
	var master spec.Node
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RoleMaster {
			master = n
		}
	}
	if master.Name == "" {
		return nil, fmt.Errorf("cluster %s has no master to be the hub of the planes", s.Metadata.Name)
	}
	byName := map[string]Member{}
	for _, m := range members {
		byName[m.Name] = m
	}
	var out []Interface
	for _, p := range spec.Planes {
		ps, ok := s.Networking.Planes[p]
		if !ok {
			continue
		}
		planeNet, err := netip.ParsePrefix(ps.CIDR)
		if err != nil {
			return nil, fmt.Errorf("networking.planes.%s.cidr %q: %w", p, ps.CIDR, err)
		}
		port := ps.Port
		if port == 0 {
			port = spec.DefaultPlanePorts[p]
		}
		addr, err := s.PlaneAddress(me, p)
		if err != nil {
			return nil, err
		}
		ifc := Interface{Plane: p, Name: InterfaceName(p), Address: netip.PrefixFrom(addr, planeNet.Bits()).String(),
			ListenPort: port, Peers: []Peer{}, Forward: me.Name == master.Name}
		endpoint := func(n spec.Node) string { return netipJoin(n.Address, port) }
		pods, podsOf, err := podRoutes(s, p)
		if err != nil {
			return nil, err
		}
		if pods != "" {
			ifc.Routes = []string{pods}
		}
		if me.Name == master.Name {
			for _, n := range s.Topology.Nodes {
				key := byName[n.Name].Keys[p]
				if n.Name == me.Name || key == "" {
					continue
				}
				a, err := s.PlaneAddress(n, p)
				if err != nil {
					return nil, err
				}
				ifc.Peers = append(ifc.Peers, Peer{Name: n.Name, PublicKey: key, Endpoint: endpoint(n),
					AllowedIPs: append([]string{netip.PrefixFrom(a, a.BitLen()).String()}, podsOf[n.Name]...)})
			}
		} else if key := byName[master.Name].Keys[p]; key != "" {
			allowed := []string{planeNet.Masked().String()}
			if pods != "" {
				allowed = append(allowed, pods)
			}
			ifc.Peers = append(ifc.Peers, Peer{Name: master.Name, PublicKey: key, Endpoint: endpoint(master),
				AllowedIPs: allowed, KeepaliveSeconds: Keepalive})
		}
		slices.SortFunc(ifc.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, ifc)
	}
	return out, nil
}

// podRoutes: on the kubernetes plane of a cluster running Kubernetes, the
// pod CIDR (routed through the interface) and each kubelet node's /24 of
// it (allowed to that node's peer); nothing on the other planes.
func podRoutes(s *spec.ClusterSpec, p spec.Plane) (string, map[string][]string, error) {
	k := s.Workloads.Kubernetes
	if p != spec.PlaneKubernetes || !k.Enabled {
		return "", nil, nil
	}
	pods, err := netip.ParsePrefix(k.PodCIDR)
	if err != nil {
		return "", nil, fmt.Errorf("workloads.kubernetes.podCIDR %q: %w", k.PodCIDR, err)
	}
	of := map[string][]string{}
	for _, n := range s.Topology.Nodes {
		if !slices.Contains(kubeplan.ComponentsFor(s, n.Role), kubeplan.Kubelet) {
			continue
		}
		sub, err := s.NodePodCIDR(n)
		if err != nil {
			return "", nil, err
		}
		of[n.Name] = []string{sub.String()}
	}
	return pods.Masked().String(), of, nil
}

func netipJoin(host string, port int) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a, uint16(port)).String()
	}
	return host + ":" + strconv.Itoa(port)
}
