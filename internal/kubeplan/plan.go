// Package kubeplan is what each node runs of Kubernetes, and with which
// flags, files and units: a pure function of the ClusterSpec. The hub
// sends a node its Plan (with the certificates' holdings), kubedosd's
// kubernetes controller writes the files it names and starts the units,
// and the build bakes the units and the container runtime's configuration
// into the role roots. One place says how a kubedos cluster is wired
// (docs/kubernetes.md), so the three cannot disagree.
package kubeplan

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/kubedos/kubedos/internal/spec"
)

// Version is the Kubernetes release the role roots carry: the kube/
// module's pin (TestVersionMatchesKubeModule).
const Version = "v1.35.4"

// Component is one Kubernetes process on a node, run as a systemd unit.
type Component string

// The components, by the names the multicall binary answers to (etcd is
// Debian's).
const (
	Etcd              Component = "etcd"
	APIServer         Component = "kube-apiserver"
	ControllerManager Component = "kube-controller-manager"
	Scheduler         Component = "kube-scheduler"
	Kubelet           Component = "kubelet"
	Proxy             Component = "kube-proxy"
)

// Components is every component in start order (haproxy and keepalived
// are lb.go's).
var Components = []Component{Etcd, APIServer, ControllerManager, Scheduler, Kubelet, Proxy, HAProxy, Keepalived}

// Ports.
const (
	APIServerPort  = 6443
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
	// EtcdMetricsPort serves etcd's /metrics and /health in plain HTTP
	// (no data, no client certificate): the LAN firewall drops it, the
	// prometheus node scrapes it over wg-observability.
	EtcdMetricsPort = 2381
	KubeletPort     = 10250
)

// etcd's raft timing, in milliseconds (Args).
const (
	EtcdHeartbeatMS = 500
	EtcdElectionMS  = 5000
)

// Paths on a node. Dir is on the state partition (the /var overlay):
// configuration the controller writes, and the certificates (PKIDir, the
// kubernetes-pki controller's). Bulk data goes to the data partition.
const (
	Dir            = "/var/lib/kubedos/kubernetes"
	PKIDir         = Dir + "/pki"
	CNIDir         = Dir + "/cni"
	PlanFile       = Dir + "/plan.json"
	EtcdDataDir    = "/data/etcd"
	ContainerdRoot = "/data/containerd"
	KubeletRoot    = "/var/lib/kubelet"
	// ImageDir holds the OCI archives baked into the root; the controller
	// imports each into containerd's k8s.io namespace at boot.
	ImageDir = "/usr/share/kubedos/images"
	// BinDir holds the multicall binary (kube) and a link per component.
	BinDir = "/usr/bin"
	// CNIBinDir is where Debian's containernetworking-plugins installs.
	CNIBinDir = "/usr/lib/cni"
)

// Images every kubelet node has without a registry: built here, baked into
// the root as OCI archives (ImageDir/<name>.tar), never pulled.
const (
	PauseImage = "kubedos.local/pause:3.10"
	ProbeImage = "kubedos.local/probe:1"
)

// EtcdNodes are the members of the cluster's etcd: the etcd nodes, or the
// control-plane nodes (stacked) when the spec has none; none when
// Kubernetes is off.
func EtcdNodes(s *spec.ClusterSpec) []spec.Node {
	if !s.Workloads.Kubernetes.Enabled {
		return nil
	}
	role := spec.RoleEtcd
	if s.CountRole(spec.RoleEtcd) == 0 {
		role = spec.RoleControlPlane
	}
	var out []spec.Node
	for _, n := range s.Topology.Nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// pairedEtcd is the one etcd node whose member control plane n's API
// server asks, where etcd runs on nodes of its own: one in n's failure
// domain when there is one (losing the domain loses both anyway), else by
// n's place among the control planes, so that the API servers spread over
// the members. As with stacked etcd (kubeadm's default), an API server
// stands or falls with its member, and the load balancers' /readyz checks
// send its clients to the others. Listing every member cost each of the
// API server's storage clients a TLS connection to each; on the 16-node
// reference's starved machines each API server then failed ~65 etcd dials
// and handshakes a minute past their deadlines (run 9; likely connections
// dropped when keepalive pings, answered within 10 s or not at all, went
// unanswered), every one of them CPU both sides needed. "" for a node
// with no API server, or with a member of its own (stacked: loopback).
func pairedEtcd(s *spec.ClusterSpec, n spec.Node) string {
	if comps := ComponentsFor(s, n.Role); !slices.Contains(comps, APIServer) || slices.Contains(comps, Etcd) {
		return ""
	}
	members := EtcdNodes(s)
	var cps, near []spec.Node
	for _, c := range s.Topology.Nodes {
		if c.Role == spec.RoleControlPlane {
			cps = append(cps, c)
		}
	}
	i := slices.IndexFunc(cps, func(c spec.Node) bool { return c.Name == n.Name })
	if len(members) == 0 || i < 0 {
		return ""
	}
	if n.FailureDomain != "" {
		for _, m := range members {
			if m.FailureDomain == n.FailureDomain {
				near = append(near, m)
			}
		}
		// The i-th control plane of its domain, among that domain's members.
		j := 0
		for _, c := range cps[:i] {
			if c.FailureDomain == n.FailureDomain {
				j++
			}
		}
		if len(near) > 0 {
			return near[j%len(near)].Name
		}
	}
	return members[i%len(members)].Name
}

// EtcdPeers are the spec's etcd members (EtcdNodes) by name and LAN peer
// URL, as every member's plan lists them.
func EtcdPeers(s *spec.ClusterSpec) ([]EtcdMember, error) {
	var out []EtcdMember
	for _, n := range EtcdNodes(s) {
		a, err := netip.ParseAddr(n.Address)
		if err != nil {
			return nil, fmt.Errorf("node %s address %q: %w", n.Name, n.Address, err)
		}
		out = append(out, EtcdMember{Name: n.Name, PeerURL: url(a, EtcdPeerPort)})
	}
	return out, nil
}

// Plan is what one node runs and how it reaches the others.
type Plan struct {
	Version string `json:"version"`
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	Role    string `json:"role"`
	// NodeIP is the node's kubernetes-plane address: every component talks
	// over wg-kubernetes.
	NodeIP     string      `json:"nodeIP"`
	Components []Component `json:"components"`
	// APIServer is the URL the node's clients (kubelet, kube-proxy,
	// controllers) use: the VIP when the spec has one, else the first
	// control-plane node's plane address.
	APIServer string `json:"apiServer"`
	// EtcdServers are the client URLs kube-apiserver uses: its own member
	// over loopback when stacked, else one etcd node on the LAN
	// (pairedEtcd).
	EtcdServers []string `json:"etcdServers,omitempty"`
	// EtcdMembers is the initial cluster (etcd nodes only), on the LAN.
	EtcdMembers []EtcdMember `json:"etcdMembers,omitempty"`
	// ControlPlanes are the control planes before this one in the spec's
	// order, by name and LAN address, on a control plane whose etcd is
	// external (the etcd role): its API server's first start waits for
	// theirs to be ready, as a stacked one waits for the earlier members'
	// (kubedosd, apiServerWaits).
	ControlPlanes []Backend `json:"controlPlanes,omitempty"`
	// EtcdAddress is this etcd member's LAN address, where it listens for
	// peers and clients.
	EtcdAddress string `json:"etcdAddress,omitempty"`
	// EtcdJoin is set by the node itself, never by the hub: its member
	// joined a running cluster (a replacement) rather than bootstrapping
	// one, with these members (itself included).
	EtcdJoin *EtcdJoin `json:"-"`
	// LANAllows are the TCP ports the node takes from the LAN from the
	// listed addresses only (etcd's, from the other members and the API
	// servers), beyond its role's baseline firewall.
	LANAllows []LANAllow `json:"lanAllows,omitempty"`
	// ClusterCIDR is the pods' range; NodePodCIDR this node's /24 of it
	// (kubelet nodes). Routes to the others go over wg-kubernetes.
	ClusterCIDR   string `json:"clusterCIDR"`
	NodePodCIDR   string `json:"nodePodCIDR,omitempty"`
	ServiceCIDR   string `json:"serviceCIDR"`
	ClusterDNS    string `json:"clusterDNS"`
	ClusterDomain string `json:"clusterDomain"`
	// LB is the load balancer's VRRP instance and backends (loadbalancer
	// nodes only).
	LB *LB `json:"lb,omitempty"`
}

// LANAllow is a TCP port accepted from the LAN from these addresses only.
type LANAllow struct {
	Port int      `json:"port"`
	From []string `json:"from"`
}

// Openings is what a plan opens in the node's firewall beyond its role's
// baseline: a load balancer's (or VIP-holding control plane's) VRRP and
// VIP, and the LANAllows.
type Openings struct {
	LB     *LB
	Allows []LANAllow
}

// Openings is p's; the zero value for a nil plan.
func (p *Plan) Openings() Openings {
	if p == nil {
		return Openings{}
	}
	return Openings{LB: p.LB, Allows: p.LANAllows}
}

// etcd's --initial-cluster-state: a member of a new cluster, or one added
// to a running cluster.
const (
	EtcdStateNew      = "new"
	EtcdStateExisting = "existing"
)

// EtcdJoin is how a member that was added to a running cluster starts:
// the cluster's members as the add returned them.
type EtcdJoin struct {
	Members []EtcdMember `json:"members"`
}

// EtcdMember is one member of the initial etcd cluster.
type EtcdMember struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// ComponentsFor is what a node of role runs in cluster s: control-plane
// nodes the API server, controllers and scheduler (and etcd, stacked, when
// the spec has no etcd nodes; keepalived when they hold the API VIP
// themselves), etcd nodes etcd, workers kubelet and kube-proxy, load
// balancers haproxy and keepalived (the API VIP). The
// certificates each holds are pki.KubeCertsFor's.
func ComponentsFor(s *spec.ClusterSpec, role spec.Role) []Component {
	switch role {
	case spec.RoleControlPlane:
		cs := []Component{APIServer, ControllerManager, Scheduler}
		if s.CountRole(spec.RoleEtcd) == 0 {
			cs = append([]Component{Etcd}, cs...)
		}
		if s.APIVIPHolders() == spec.RoleControlPlane {
			cs = append(cs, Keepalived)
		}
		return cs
	case spec.RoleEtcd:
		return []Component{Etcd}
	case spec.RoleWorker:
		return []Component{Kubelet, Proxy}
	case spec.RoleLoadBalancer:
		return []Component{HAProxy, Keepalived}
	}
	return nil
}

// For is node's plan in cluster s (defaults applied). A node that runs no
// component, or a cluster without Kubernetes, has none: nil, nil.
func For(s *spec.ClusterSpec, node string) (*Plan, error) {
	if !s.Workloads.Kubernetes.Enabled {
		return nil, nil
	}
	n, ok := s.NodeByName(node)
	if !ok {
		return nil, fmt.Errorf("node %q is not in cluster %s", node, s.Metadata.Name)
	}
	comps := ComponentsFor(s, n.Role)
	if len(comps) == 0 {
		return nil, nil
	}
	k := s.Workloads.Kubernetes
	ip, err := s.PlaneAddress(n, spec.PlaneKubernetes)
	if err != nil {
		return nil, fmt.Errorf("kubernetes plane: %w", err)
	}
	svc, err := netip.ParsePrefix(k.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("workloads.kubernetes.serviceCIDR %q: %w", k.ServiceCIDR, err)
	}
	dns, err := ClusterDNS(s)
	if err != nil {
		return nil, err
	}
	p := &Plan{Version: Version, Cluster: s.Metadata.Name, Node: n.Name, Role: string(n.Role), NodeIP: ip.String(),
		Components: comps, ClusterCIDR: k.PodCIDR, ServiceCIDR: svc.Masked().String(), ClusterDNS: dns.String(),
		ClusterDomain: k.Domain()}
	if p.APIServer, err = apiServerURL(s); err != nil {
		return nil, err
	}
	// etcd talks over the LAN, not the kubernetes plane: the planes run
	// through the master, and etcd's quorum (and with it the API) must
	// outlive the master's reboot. Peers and clients authenticate by the
	// etcd CA; the firewall takes each port from the nodes that need it
	// only (LANAllows).
	var members, clients []string
	paired := pairedEtcd(s, n)
	for _, m := range EtcdNodes(s) {
		a, err := netip.ParseAddr(m.Address)
		if err != nil {
			return nil, fmt.Errorf("node %s address %q: %w", m.Name, m.Address, err)
		}
		if m.Name == paired {
			p.EtcdServers = append(p.EtcdServers, url(a, EtcdClientPort))
		}
		if slices.Contains(comps, Etcd) {
			p.EtcdMembers = append(p.EtcdMembers, EtcdMember{Name: m.Name, PeerURL: url(a, EtcdPeerPort)})
			if m.Name == n.Name {
				p.EtcdAddress = a.String()
			} else {
				members = append(members, a.String())
			}
		}
	}
	if slices.Contains(comps, APIServer) && !slices.Contains(comps, Etcd) && len(p.EtcdServers) > 0 {
		for _, c := range s.Topology.Nodes {
			if c.Name == n.Name {
				break
			}
			if c.Role != spec.RoleControlPlane {
				continue
			}
			p.ControlPlanes = append(p.ControlPlanes, Backend{Name: c.Name, Address: c.Address})
		}
	}
	if slices.Contains(comps, APIServer) && slices.Contains(comps, Etcd) {
		// A stacked API server talks to its own member only, over
		// loopback, as kubeadm's do: the member replicates; the API
		// server and its member stand or fall together on one node
		// anyway. Dialing every member cost each of its ~60 storage
		// clients a TLS handshake per member, on both sides, and under
		// emulation those outran kube-apiserver's fixed 20 s etcd dial
		// timeout ("problem initializing API group", the fifth HA drill
		// run), so the API servers restarted without end.
		p.EtcdServers = []string{url(netip.MustParseAddr("127.0.0.1"), EtcdClientPort)}
	}
	if p.EtcdAddress != "" {
		// Clients: the master, whose hub takes the etcd snapshots
		// (hubhost, keeper_etcd.go); the other members: a replaced member
		// asks their /health before it joins (agent, etcdPrepare); and
		// the API servers paired with this member, no other: each asks
		// one member, and a stacked one asks its own over loopback.
		for _, c := range s.Topology.Nodes {
			if c.Name == n.Name {
				continue
			}
			if c.Role == spec.RoleMaster || slices.Contains(ComponentsFor(s, c.Role), Etcd) || pairedEtcd(s, c) == n.Name {
				clients = append(clients, c.Address)
			}
		}
		for _, a := range []LANAllow{{EtcdPeerPort, members}, {EtcdClientPort, clients}} {
			if len(a.From) > 0 {
				p.LANAllows = append(p.LANAllows, a)
			}
		}
	}
	if slices.Contains(comps, Kubelet) {
		sub, err := s.NodePodCIDR(n)
		if err != nil {
			return nil, err
		}
		p.NodePodCIDR = sub.String()
	}
	if slices.Contains(comps, Keepalived) {
		if p.LB, err = lbPlan(s, n); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// apiServerURL: the VIP when the spec has one (held by the load balancers
// or the control planes), else the first control-plane node on the
// kubernetes plane.
func apiServerURL(s *spec.ClusterSpec) (string, error) {
	if v := s.Topology.APIVIP; v != "" && s.APIVIPHolders() != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return "", fmt.Errorf("topology.apiVIP %q: %w", v, err)
		}
		return url(a, APIServerPort), nil
	}
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RoleControlPlane {
			a, err := s.PlaneAddress(n, spec.PlaneKubernetes)
			if err != nil {
				return "", fmt.Errorf("kubernetes plane: %w", err)
			}
			return url(a, APIServerPort), nil
		}
	}
	return "", fmt.Errorf("workloads.kubernetes is enabled but the topology has no controlplane node")
}

func url(a netip.Addr, port int) string {
	return "https://" + netip.AddrPortFrom(a, uint16(port)).String()
}

// ClusterDNS is the cluster DNS address: the tenth of the service CIDR,
// as kubeadm takes it. Kubelets hand it to pods (clusterDNS) and the
// kube-dns Service holds it (CoreDNSObjects).
func ClusterDNS(s *spec.ClusterSpec) (netip.Addr, error) {
	k := s.Workloads.Kubernetes
	svc, err := netip.ParsePrefix(k.ServiceCIDR)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("workloads.kubernetes.serviceCIDR %q: %w", k.ServiceCIDR, err)
	}
	dns, ok := nth(svc.Masked(), 10)
	if !ok {
		return netip.Addr{}, fmt.Errorf("workloads.kubernetes.serviceCIDR %s has no tenth address for the cluster DNS", svc)
	}
	return dns, nil
}

func nth(p netip.Prefix, n int) (netip.Addr, bool) {
	a := p.Addr()
	for range n {
		a = a.Next()
		if !a.IsValid() || !p.Contains(a) {
			return netip.Addr{}, false
		}
	}
	return a, true
}
