package kubeplan

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"

	"github.com/kubedos/kubedos/internal/spec"
)

// The API load balancer (docs/kubernetes.md, "API load balancers"): on
// each loadbalancer node haproxy serves topology.apiVIP:6443 in TCP mode
// in front of every kube-apiserver, and keepalived holds the VIP on one of
// them by VRRP. Both are Debian's packages and units; kubedosd writes
// their configuration from the hub's plan and starts them.

// LB is what a load-balancer node's plan adds: its VRRP instance and the
// API servers it balances. Everything in it comes from the spec.
type LB struct {
	// VIP is topology.apiVIP; PrefixBits is the LAN's prefix length, which
	// the VIP gets on the LAN interface.
	VIP        string `json:"vip"`
	PrefixBits int    `json:"prefixBits"`
	// Address is this node's LAN address, the source of its VRRP
	// advertisements; Peers the other load balancers' (unicast: no
	// multicast leaves the node).
	Address string   `json:"address"`
	Peers   []string `json:"peers"`
	// Priority is this node's VRRP priority: highest for the first load
	// balancer in the spec, one less for each next one; the same for
	// every control plane holding the VIP (CPVRRPPriority).
	Priority int `json:"priority"`
	// RouterID is the VRRP virtual router id (1-255), the VIP's last byte.
	RouterID int `json:"routerID"`
	// Track is the unit keepalived follows: the VIP is given up while it
	// is not running. haproxy on load balancers; kube-apiserver where the
	// control planes hold the VIP themselves.
	Track Component `json:"track"`
	// Backends are the control-plane nodes' API servers, on the LAN, that
	// haproxy balances (none where the control planes hold the VIP: the
	// API server there serves it).
	Backends []Backend `json:"backends,omitempty"`
}

// Backend is one kube-apiserver behind the VIP.
type Backend struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// The load balancer's components: Debian's haproxy and keepalived.
const (
	HAProxy    Component = "haproxy"
	Keepalived Component = "keepalived"
)

// debianUnit says which components run from the unit their Debian package
// ships (with a drop-in of ours) rather than from a unit of ours.
func debianUnit(c Component) bool { return c == HAProxy || c == Keepalived }

// Configuration files kubedosd writes on load balancers.
var (
	HAProxyConfig    = path.Join(Dir, "haproxy.cfg")
	KeepalivedConfig = path.Join(Dir, "keepalived.conf")
)

// APINotReadyFile is where kubedosd says, for keepalived, whether the
// local API server answers /readyz where the control planes hold the VIP
// themselves: "0" ready, "1" not. It is in /run so that a reboot forgets
// it: a node coming back starts not ready (keepalived's init_file) until
// kubedosd has asked its API server.
const APINotReadyFile = "/run/kubedos/keepalived/kube-apiserver-not-ready"

// DropInFile is where the drop-in of a component that runs from Debian's
// unit goes in a role root ("" for the others).
func DropInFile(c Component) string {
	if !debianUnit(c) {
		return ""
	}
	return "/etc/systemd/system/" + UnitName(c) + ".d/kubedos.conf"
}

// DropIn points Debian's unit at the configuration kubedosd writes, and
// keeps the unit from starting without it. Debian's packages enable their
// units; the build removes that enablement, so kubedosd starts them like
// every other component.
//
// haproxy.service takes its configuration file from CONFIG (which
// /etc/default/haproxy, in the read-only root, leaves commented out), so
// setting it covers start and reload alike. keepalived.service reads
// DAEMON_ARGS from /etc/default/keepalived, which would override an
// Environment= here, so its command line is replaced instead; its
// ConditionFileNotEmpty on /etc/keepalived/keepalived.conf is cleared.
func DropIn(c Component) string {
	switch c {
	case HAProxy:
		return fmt.Sprintf(`# kubedos: haproxy from kubedosd's configuration (docs/kubernetes.md)
[Unit]
ConditionPathExists=%s

[Service]
Environment="CONFIG=%s"
`, HAProxyConfig, HAProxyConfig)
	case Keepalived:
		return fmt.Sprintf(`# kubedos: keepalived from kubedosd's configuration (docs/kubernetes.md)
[Unit]
ConditionFileNotEmpty=
ConditionPathExists=%s

[Service]
ExecStart=
ExecStart=/usr/sbin/keepalived --dont-fork --use-file=%s
`, KeepalivedConfig, KeepalivedConfig)
	}
	return ""
}

// lbPlan is node n's LB in s: the order of the load balancers in the
// spec gives each its priority, so the first one up holds the VIP; control
// planes holding the VIP all get CPVRRPPriority, their readiness deciding
// (keepalivedConfig).
func lbPlan(s *spec.ClusterSpec, n spec.Node) (*LB, error) {
	holders := s.APIVIPHolders()
	vip, err := netip.ParseAddr(s.Topology.APIVIP)
	if err != nil || holders == "" {
		return nil, fmt.Errorf("topology.apiVIP %q: the %s nodes need the API VIP: %v", s.Topology.APIVIP, n.Role, err)
	}
	lan, err := netip.ParsePrefix(s.Networking.LAN.CIDR)
	if err != nil {
		return nil, fmt.Errorf("networking.lan.cidr %q: %w", s.Networking.LAN.CIDR, err)
	}
	lb := &LB{VIP: vip.String(), PrefixBits: lan.Bits(), Address: n.Address, RouterID: routerID(vip), Track: APIServer}
	if holders == spec.RoleLoadBalancer {
		lb.Track = HAProxy
	}
	i := 0
	for _, m := range s.Topology.Nodes {
		if m.Role == holders {
			if m.Name == n.Name {
				lb.Priority = MaxVRRPPriority - i
				if lb.Track == APIServer {
					lb.Priority = CPVRRPPriority
				}
			} else {
				lb.Peers = append(lb.Peers, m.Address)
			}
			i++
		}
		if m.Role == spec.RoleControlPlane && lb.Track == HAProxy {
			lb.Backends = append(lb.Backends, Backend{Name: m.Name, Address: m.Address})
		}
	}
	if lb.Priority < 1 {
		return nil, fmt.Errorf("topology.nodes: %d %s nodes, more than VRRP's priorities can order", i, holders)
	}
	if lb.Track == HAProxy && len(lb.Backends) == 0 {
		return nil, fmt.Errorf("topology.nodes: the load balancers have no controlplane node to balance")
	}
	return lb, nil
}

// MaxVRRPPriority is the first load balancer's priority; 255 is reserved
// for the owner of the address, which no node is.
const MaxVRRPPriority = 254

// CPVRRPPriority is every control plane's priority where they hold the
// VIP, and notReadyWeight what a not-ready API server takes off it: a
// ready control plane (200) outranks every not-ready one (100), two ready
// ones tie (a tie never preempts the holder).
const (
	CPVRRPPriority = 200
	notReadyWeight = -100
)

// routerID is the VIP's last byte (255 for 0): stable, and different for
// two clusters' VIPs in one /24. Unicast VRRP only talks to the listed
// peers, so an id shared with another segment's router is harmless.
func routerID(vip netip.Addr) int {
	b := vip.AsSlice()
	if id := int(b[len(b)-1]); id != 0 {
		return id
	}
	return 255
}

func (lb *LB) validate() []string {
	var bad []string
	addrs := append([]string{lb.VIP, lb.Address}, lb.Peers...)
	for _, b := range lb.Backends {
		if !nameRE(b.Name) {
			bad = append(bad, fmt.Sprintf("lb backend %q is not a DNS label", clip(b.Name)))
		}
		addrs = append(addrs, b.Address)
	}
	for _, a := range addrs {
		if _, err := netip.ParseAddr(a); err != nil {
			bad = append(bad, fmt.Sprintf("lb address %q is not an address", clip(a)))
		}
	}
	switch lb.Track {
	case HAProxy:
		if len(lb.Backends) == 0 {
			bad = append(bad, "lb: haproxy with no backend")
		}
	case APIServer:
		if len(lb.Backends) != 0 {
			bad = append(bad, "lb: backends without haproxy")
		}
	default:
		bad = append(bad, fmt.Sprintf("lb: keepalived cannot track %q", clip(string(lb.Track))))
	}
	if len(lb.Backends) > maxLBNodes || len(lb.Peers) > maxLBNodes {
		bad = append(bad, fmt.Sprintf("lb: %d backends and %d peers (at most %d each)", len(lb.Backends), len(lb.Peers), maxLBNodes))
	}
	if lb.PrefixBits < 1 || lb.PrefixBits > 128 {
		bad = append(bad, fmt.Sprintf("lb prefixBits %d", lb.PrefixBits))
	}
	if lb.Priority < 1 || lb.Priority > MaxVRRPPriority || lb.RouterID < 1 || lb.RouterID > 255 {
		bad = append(bad, fmt.Sprintf("lb priority %d or router id %d out of range", lb.Priority, lb.RouterID))
	}
	return bad
}

// maxLBNodes bounds a plan's peers and backends.
const maxLBNodes = 64

// Host is what the files of a node depend on besides its plan: facts of
// the machine the hub does not know.
type Host struct {
	// LANInterface is the interface holding the node's LAN address
	// (the image matches en* and eth*; the name is the machine's).
	LANInterface string
}

var ifnameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// HAProxyCheckTimeouts: a backend is out after 2 failed checks 5 s apart
// (about 10 s), back after 2. The interval is also the bound on a check's
// connection and TLS handshake (haproxy takes min("timeout connect",
// "inter")): at 2 s, on the 16-node reference's starved control planes
// (10-12 CPU-s a minute), every handshake took longer and haproxy took
// all three API servers out of a working API (reference run 7).
const (
	haproxyInter = "5s"
	haproxyFall  = 2
	haproxyRise  = 2
)

// panicBackend is where the VIP's connections go when no API server
// passes its /readyz check: those that accept a connection.
const panicBackend = "kube-apiserver-listening"

// haproxyConfig balances the VIP's port 6443 over the API servers in TCP
// mode: TLS stays end to end between client and kube-apiserver (client
// certificates are the API's authentication), haproxy only picks the
// server. Each server is checked with GET /readyz over TLS, verified
// against the Kubernetes CA and the server's name (its apiserver
// certificate carries the node name): /readyz is readable without
// credentials (system:public-info-viewer), and a server that is up but
// not ready (etcd lost, shutting down) gets no new connection.
//
// The frontend binds the VIP with "transparent", which lets haproxy bind
// an address the node does not hold yet (the backup load balancers): it
// listens before keepalived moves the VIP here, so a failover needs no
// restart. Backends are the control-plane nodes' LAN addresses, not their
// kubernetes-plane ones: the planes run through the master, which would
// make it a single point of failure of the API path.
//
// When every API server fails its /readyz check, haproxy forwards to
// every one that accepts a connection (a second backend, checked by TCP
// connect only), as Envoy's panic threshold does: a check fails on a slow
// /readyz (etcd answering late, a starved machine) long before the server
// stops serving, and refusing every connection turns an overloaded API
// into none. On the 16-node reference (run 8) haproxy took all three
// starved API servers out and every client's retry then failed at the VIP;
// in run 9, with every server forwarded to unchecked, clients also went to
// control planes whose API server had not started yet. Clients still
// verify the server end to end; the /readyz checks decide while at least
// one server passes them.
func haproxyConfig(p *Plan) []byte {
	lb := p.LB
	var b strings.Builder
	fmt.Fprintf(&b, `# kubedos: API load balancer of cluster %s on %s, written by kubedosd from the hub's plan; do not edit.
global
	log /dev/log local0 notice
	chroot /var/lib/haproxy
	user haproxy
	group haproxy

defaults
	mode tcp
	log global
	option tcplog
	option dontlognull
	option log-health-checks
	option redispatch
	retries 3
	timeout connect 5s
	# Watches and exec/logs streams are long-lived: an hour of silence.
	timeout client 1h
	timeout server 1h
	timeout check 5s

frontend kube-apiserver
	bind %s transparent
	use_backend %s if { nbsrv(kube-apiserver) eq 0 }
	default_backend kube-apiserver

backend kube-apiserver
	balance leastconn
	option httpchk
	http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host kubernetes
	http-check expect status 200
	default-server check check-ssl verify required ca-file %s inter %s fall %d rise %d
`, p.Cluster, p.Node, netip.AddrPortFrom(netip.MustParseAddr(lb.VIP), APIServerPort), panicBackend, pki("ca.crt"), haproxyInter, haproxyFall, haproxyRise)
	for _, s := range lb.Backends {
		fmt.Fprintf(&b, "\tserver %s %s check-sni %s verifyhost %s\n", s.Name, hostPort(s.Address, APIServerPort), s.Name, s.Name)
	}
	fmt.Fprintf(&b, "\nbackend %s\n\tbalance leastconn\n\tdefault-server check inter %s fall %d rise %d\n",
		panicBackend, haproxyInter, haproxyFall, haproxyRise)
	for _, s := range lb.Backends {
		fmt.Fprintf(&b, "\tserver %s %s\n", s.Name, hostPort(s.Address, APIServerPort))
	}
	return []byte(b.String())
}

// keepalivedConfig holds the VIP on the LAN interface by VRRP: every load
// balancer (or control plane holding the VIP) starts as backup, and the
// tracked process puts the instance in fault, giving the VIP up, while the
// local haproxy (or, on a control plane, the API server) is not running.
// Advertisements are unicast to the other holders (the firewall accepts
// VRRP only from them).
//
// Load balancers: the highest priority among those whose haproxy runs
// takes the VIP, and "nopreempt" keeps it there when a higher one comes
// back (each move of the VIP cuts the API's open connections); haproxy's
// /readyz checks decide which API server gets a connection.
//
// Control planes: running is not ready. A control plane coming back has
// its API server active for minutes before it is ready (661 s of a
// replacement's 800 s under emulation); had it taken the VIP then, writes
// through the VIP failed until it was ready (the HA drills' failed-write
// windows). So keepalived also tracks APINotReadyFile, which kubedosd
// keeps from the local /readyz, as a priority: every control plane has
// CPVRRPPriority, and not ready takes notReadyWeight off it. A ready one
// preempts a not-ready holder; ready ones tie, and a tie never preempts,
// so the VIP does not move back and forth; and when none is ready, one
// still holds the VIP, as haproxy's panic mode still forwards: a fault
// on not-ready would leave no holder when every API server answers late
// at once (a starved host), turning a slow API into none.
//
// Timing: an advertisement every 2 s (a backup takes over about 6 s after
// the holder went silent). The tracked unit is watched as a process
// (vrrp_track_process: the kernel tells keepalived of every exec and
// exit), not by a script: a track script ran systemctl every 5 s with 4 s
// to answer, and on the 16-node reference's load balancers, each given a
// twelfth of a core, it timed out on every run, so none of the three ever
// left fault and the VIP was never held (reference run 6). At 1 s and 2 s
// the script had timed out even on the HA drill topology.
//
// No authentication: VRRPv2's authentication was removed from the protocol
// (RFC 3768) because it protects nothing (the password travels in clear),
// and VRRPv3 has none. What keeps a stranger from taking the VIP is the
// firewall (VRRP only from the peers' addresses) and check_unicast_src.
func keepalivedConfig(p *Plan, h Host) []byte {
	lb := p.LB
	var b strings.Builder
	fmt.Fprintf(&b, `# kubedos: API VIP of cluster %s on %s, written by kubedosd from the hub's plan; do not edit.
global_defs {
	router_id %s
}

vrrp_track_process %s {
	process %s
	quorum 1
	weight 0
}

%svrrp_instance kube-apiserver {
	state BACKUP
%s	interface %s
	virtual_router_id %d
	priority %d
	advert_int 2
	unicast_src_ip %s
	check_unicast_src
	unicast_peer {
`, p.Cluster, p.Node, p.Node, lb.Track, trackedProcess(lb.Track), trackFileDecl(lb), preempt(lb), h.LANInterface, lb.RouterID, lb.Priority, lb.Address)
	for _, peer := range lb.Peers {
		fmt.Fprintf(&b, "\t\t%s\n", peer)
	}
	fmt.Fprintf(&b, `	}
	virtual_ipaddress {
		%s/%d dev %s
	}
	track_process {
		%s
	}
%s}
`, lb.VIP, lb.PrefixBits, h.LANInterface, lb.Track, trackFileUse(lb))
	return []byte(b.String())
}

// trackedProcess is the process name (/proc/PID/comm) of the unit
// keepalived follows: Debian's haproxy (its master and worker both), or
// the API server, which runs as the kube binary through its link
// kube-apiserver (a process's name is the name it was executed by).
func trackedProcess(c Component) string {
	return string(c)
}

// preempt is the load balancers' nopreempt; control planes preempt, by
// readiness only (keepalivedConfig).
func preempt(lb *LB) string {
	if lb.Track == APIServer {
		return ""
	}
	return "\tnopreempt\n"
}

// trackFileDecl declares APINotReadyFile where keepalived tracks the API
// server: the number in the file (1 not ready, 0 ready) times
// notReadyWeight is added to the priority; a missing file is created
// holding 1 (not ready). keepalived reads it again whenever inotify says
// it changed.
func trackFileDecl(lb *LB) string {
	if lb.Track != APIServer {
		return ""
	}
	return fmt.Sprintf(`track_file api-ready {
	file "%s"
	weight %d
	init_file 1
}

`, APINotReadyFile, notReadyWeight)
}

func trackFileUse(lb *LB) string {
	if lb.Track != APIServer {
		return ""
	}
	return "\ttrack_file {\n\t\tapi-ready\n\t}\n"
}
