package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// CountRole is how many nodes of s have role r.
func (s *ClusterSpec) CountRole(r Role) int {
	n := 0
	for _, node := range s.Topology.Nodes {
		if node.Role == r {
			n++
		}
	}
	return n
}

// APIVIPHolders is the role whose nodes hold topology.apiVIP: the load
// balancers (haproxy in front of every API server, keepalived moving the
// VIP), or, when there are none, the control-plane nodes themselves
// (keepalived beside each API server, which serves the VIP directly, as
// Talos's shared VIP does); "" without a VIP.
func (s *ClusterSpec) APIVIPHolders() Role {
	switch {
	case s.Topology.APIVIP == "":
		return ""
	case s.CountRole(RoleLoadBalancer) > 0:
		return RoleLoadBalancer
	}
	return RoleControlPlane
}

// NodeByName finds a node; ok is false when there is none.
func (s *ClusterSpec) NodeByName(name string) (Node, bool) {
	for _, n := range s.Topology.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// HubName is the name the hub's TLS certificate carries (api.HubServerName,
// pki.HubServerName). No node may take it, nor localhost: a node's
// certificate names the node and is good for server auth.
const HubName = "kubedos-hub"

// ReservedNodeNames are the names no node may have.
var ReservedNodeNames = []string{HubName, "localhost"}

func validateNodes(c *problems, s *ClusterSpec, lan netip.Prefix) {
	nodes := s.Topology.Nodes
	if len(nodes) == 0 {
		c.add("topology.nodes", "at least one node (the master) is required")
		return
	}
	names, vmids, addrs := map[string]int{}, map[int]int{}, map[netip.Addr]string{}
	planeAddrs := map[netip.Addr]string{}
	if g, err := netip.ParseAddr(s.Networking.LAN.Gateway); err == nil {
		addrs[g] = "networking.lan.gateway"
	}
	for i, n := range nodes {
		at := fmt.Sprintf("topology.nodes[%d]", i)
		if !dnsLabelRE.MatchString(n.Name) {
			c.add(at+".name", "must be a DNS label (lower case letters, digits, '-'), got %q", n.Name)
		} else if slices.Contains(ReservedNodeNames, n.Name) {
			c.add(at+".name", "%q is reserved (names reserved for the hub: %q)", n.Name, ReservedNodeNames)
		} else if j, dup := names[n.Name]; dup {
			c.add(at+".name", "name %q is already used by topology.nodes[%d]", n.Name, j)
		} else {
			names[n.Name] = i
		}
		if !slices.Contains(Roles, n.Role) {
			c.add(at+".role", "unknown role %q (roles: %v)", n.Role, Roles)
		}
		if n.VMID < MinVMID || n.VMID > MaxVMID {
			c.add(at+".vmid", "must be %d..%d, got %d", MinVMID, MaxVMID, n.VMID)
		} else if j, dup := vmids[n.VMID]; dup {
			c.add(at+".vmid", "VMID %d is already used by topology.nodes[%d]", n.VMID, j)
		} else {
			vmids[n.VMID] = i
		}
		a, lanOK := checkInside(c, at+".address", n.Address, lan)
		if lanOK {
			if other, dup := addrs[a]; dup {
				c.add(at+".address", "address %s is already used by %s", a, other)
			} else {
				addrs[a] = at
			}
		}
		checkRange(c, at+".cpus", n.CPUs, MinCPUs, MaxCPUs)
		checkRange(c, at+".memoryMiB", n.MemoryMiB, MinMemoryMiB, MaxMemoryMiB)
		checkRange(c, at+".diskGiB", n.DiskGiB, MinDiskGiB, MaxDiskGiB)
		validatePlaneAddresses(c, s, n, at, lanOK && lan.IsValid(), planeAddrs)
	}
	if m := s.CountRole(RoleMaster); m != 1 {
		c.add("topology.nodes", "exactly one node must have role master, found %d", m)
	}
	for _, r := range []Role{RoleEtcd, RoleControlPlane} {
		if k := s.CountRole(r); k%2 == 0 && k > 0 {
			c.add("topology.nodes", "role %s needs an odd count (1, 3, 5…) for quorum, found %d", r, k)
		}
	}
	validatePlacement(c, s)
	if lbs := s.CountRole(RoleLoadBalancer); lbs > 0 {
		// The load balancers exist to hold the API VIP (docs/kubernetes.md,
		// "API load balancers"), by unicast VRRP between them: one alone
		// has no peer, and would fall back to multicast with nowhere to
		// fail over to.
		if s.Topology.APIVIP == "" {
			c.add("topology.apiVIP", "is required: the %d loadbalancer node(s) hold the Kubernetes API VIP; give a free host address on networking.lan.cidr", lbs)
		}
		if lbs == 1 {
			c.add("topology.nodes", "one loadbalancer node has no peer to hand the API VIP to: give two or more, or none (clients then use the first controlplane node)")
		}
	}
	if s.Topology.APIVIP != "" {
		if a, ok := checkInside(c, "topology.apiVIP", s.Topology.APIVIP, lan); ok {
			if other, dup := addrs[a]; dup {
				c.add("topology.apiVIP", "VIP %s is already used by %s", a, other)
			}
		}
		if s.CountRole(RoleLoadBalancer) == 0 && s.CountRole(RoleControlPlane) < 2 {
			c.add("topology.apiVIP", "an API VIP is held by the loadbalancer nodes, or by the controlplane nodes when there are none: give two or more of either (found %d controlplane)", s.CountRole(RoleControlPlane))
		}
	}
}

// validatePlaneAddresses checks given and derived plane addresses; lanOK says
// whether the node's LAN address is usable to derive from (if not, that is
// reported already and derived addresses would only repeat it).
func validatePlaneAddresses(c *problems, s *ClusterSpec, n Node, at string, lanOK bool, seen map[netip.Addr]string) {
	for _, plane := range sortedKeys(n.PlaneAddresses) {
		if !slices.Contains(Planes, plane) {
			c.add(at+".planeAddresses."+string(plane), "unknown plane %q (planes: %v)", plane, Planes)
		}
	}
	for _, plane := range Planes {
		ps, declared := s.Networking.Planes[plane]
		pn, err := netip.ParsePrefix(ps.CIDR)
		if !declared || err != nil {
			continue // reported by validateNetworking
		}
		path := at + ".planeAddresses." + string(plane)
		if v, given := n.PlaneAddresses[plane]; given {
			if _, ok := checkInside(c, path, v, pn.Masked()); !ok {
				continue
			}
		} else if !lanOK {
			continue
		}
		a, err := s.PlaneAddress(n, plane)
		if err != nil {
			c.add(path, "%v; give the address explicitly", err)
			continue
		}
		if other, dup := seen[a]; dup {
			c.add(path, "plane address %s is already used by %s", a, other)
			continue
		}
		seen[a] = path
	}
}

func checkRange(c *problems, path string, v, lo, hi int) {
	if v < lo || v > hi {
		c.add(path, "must be %d..%d, got %d", lo, hi, v)
	}
}

func validateStorage(c *problems, s *ClusterSpec) {
	st := s.Storage
	if !slices.Contains([]string{"ext4", "xfs"}, st.Data.Filesystem) {
		c.add("storage.data.filesystem", "must be ext4 or xfs, got %q", st.Data.Filesystem)
	}
	if st.ZFS.Enabled && !slices.Contains(s.OS.Components, "contrib") {
		c.add("storage.zfs.enabled", "OpenZFS is in Debian's contrib component: add contrib to os.components")
	}
	pools := map[string]bool{}
	for i, p := range st.ZFS.Pools {
		at := fmt.Sprintf("storage.zfs.pools[%d]", i)
		if !dnsLabelRE.MatchString(p.Name) || pools[p.Name] {
			c.add(at+".name", "must be a unique pool name (lower case letters, digits, '-'), got %q", p.Name)
		}
		pools[p.Name] = true
		if !slices.Contains([]string{"", "single", "mirror", "raidz1", "raidz2"}, p.Layout) {
			c.add(at+".layout", "must be single, mirror, raidz1 or raidz2, got %q", p.Layout)
		}
		checkNodeRefs(c, s, at+".nodes", p.Nodes)
	}
	if len(st.ZFS.Pools) > 0 && !st.ZFS.Enabled {
		c.add("storage.zfs.pools", "pools are declared but storage.zfs.enabled is false")
	}
	ceph := st.Ceph
	if !ceph.Enabled {
		return
	}
	if ceph.Plane == "" {
		c.add("storage.ceph.plane", "Ceph needs its network plane declared explicitly (control, observability or kubernetes)")
	} else if !slices.Contains(Planes, ceph.Plane) {
		c.add("storage.ceph.plane", "unknown plane %q (planes: %v)", ceph.Plane, Planes)
	}
	if len(ceph.Nodes) == 0 {
		c.add("storage.ceph.nodes", "Ceph needs the nodes that carry its OSDs listed explicitly")
	}
	checkNodeRefs(c, s, "storage.ceph.nodes", ceph.Nodes)
	for i, name := range ceph.Nodes {
		n, ok := s.NodeByName(name)
		if !ok {
			continue
		}
		if n.FailureDomain == "" {
			c.add(fmt.Sprintf("storage.ceph.nodes[%d]", i), "node %s carries Ceph OSDs, so its failureDomain must be explicit", name)
		}
	}
}

func checkNodeRefs(c *problems, s *ClusterSpec, path string, names []string) {
	seen := map[string]bool{}
	for i, name := range names {
		if _, ok := s.NodeByName(name); !ok {
			c.add(fmt.Sprintf("%s[%d]", path, i), "no node named %q in topology.nodes", name)
		} else if seen[name] {
			c.add(fmt.Sprintf("%s[%d]", path, i), "node %q is listed twice", name)
		}
		seen[name] = true
	}
}

func validateWorkloads(c *problems, s *ClusterSpec, lan netip.Prefix) {
	k := s.Workloads.Kubernetes
	if k.Enabled {
		// The role roots carry one release (the kube/ module's pin): a spec
		// may name it, to say which it expects, but not another.
		if k.Version != "" && k.Version != KubernetesVersion {
			c.add("workloads.kubernetes.version", "kubedos builds Kubernetes %s: leave the version empty or set it to %q, got %q",
				KubernetesVersion, KubernetesVersion, k.Version)
		}
		if s.CountRole(RoleControlPlane) == 0 {
			c.add("workloads.kubernetes.enabled", "Kubernetes needs at least one node with role controlplane")
		}
		if _, ok := s.Networking.Planes[PlaneKubernetes]; !ok {
			c.add("workloads.kubernetes.enabled", "Kubernetes runs over the kubernetes plane: networking.planes.kubernetes must be set")
		}
		validateKubeIdentity(c, k)
		pod, okPod := parsePrefix(c, "workloads.kubernetes.podCIDR", k.PodCIDR)
		if okPod && (!pod.Addr().Is4() || pod.Bits() > 16) {
			// NodePodCIDR numbers a /24 per node by its LAN host number.
			c.add("workloads.kubernetes.podCIDR", "must be an IPv4 /16 or larger (a /24 per kubelet node, numbered by its LAN host number), got %s", pod)
		}
		svc, okSvc := parsePrefix(c, "workloads.kubernetes.serviceCIDR", k.ServiceCIDR)
		others := map[string]netip.Prefix{}
		if lan.IsValid() {
			others["networking.lan.cidr"] = lan
		}
		for _, name := range sortedKeys(s.Networking.Planes) {
			if p, err := netip.ParsePrefix(s.Networking.Planes[name].CIDR); err == nil {
				others["networking.planes."+string(name)+".cidr"] = p
			}
		}
		if okPod && okSvc && pod.Overlaps(svc) {
			c.add("workloads.kubernetes.serviceCIDR", "%s overlaps podCIDR %s", svc, pod)
		}
		for _, path := range sortedKeys(others) {
			if okPod && pod.Overlaps(others[path]) {
				c.add("workloads.kubernetes.podCIDR", "%s overlaps %s (%s)", pod, path, others[path])
			}
			if okSvc && svc.Overlaps(others[path]) {
				c.add("workloads.kubernetes.serviceCIDR", "%s overlaps %s (%s)", svc, path, others[path])
			}
		}
	}
	o := s.Workloads.Observability
	if o.Prometheus && s.CountRole(RolePrometheus) == 0 {
		c.add("workloads.observability.prometheus", "needs a node with role prometheus")
	}
	if o.Grafana && s.CountRole(RoleGrafana) == 0 {
		c.add("workloads.observability.grafana", "needs a node with role grafana")
	}
	validateObservability(c, s)
}

func validateTargets(c *problems, s *ClusterSpec) {
	t := s.Targets
	switch t.Default {
	case TargetQEMU, TargetISO:
	case TargetProxmox:
		if t.Proxmox == nil {
			c.add("targets.proxmox", "default target is proxmox, so targets.proxmox must be configured")
		}
	default:
		c.add("targets.default", "must be qemu, proxmox or iso, got %q", t.Default)
	}
	if p := t.Proxmox; p != nil {
		if u, err := url.Parse(p.APIURL); err != nil || u.Scheme != "https" || u.Host == "" {
			c.add("targets.proxmox.apiURL", "must be an https URL such as https://pve.example:8006/api2/json, got %q", p.APIURL)
		}
		if p.Fingerprint != "" {
			if _, err := ParseFingerprint(p.Fingerprint); err != nil {
				c.add("targets.proxmox.fingerprint", "%v", err)
			}
		}
		for _, f := range []struct{ path, v string }{{"node", p.Node}, {"storage", p.Storage}, {"bridge", p.Bridge}} {
			if f.v == "" {
				c.add("targets.proxmox."+f.path, "is required")
			}
		}
	}
}

// ParseFingerprint reads a certificate's SHA-256 fingerprint: 64 hex digits,
// pairs optionally separated by colons.
func ParseFingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("want a SHA-256 certificate fingerprint (64 hex digits, colons allowed), got %q", s)
	}
	return b, nil
}
