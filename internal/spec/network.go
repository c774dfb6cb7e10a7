package spec

import (
	"fmt"
	"math/big"
	"net/netip"
)

// PlaneAddress is node's address on a plane: the override from the spec when
// given, otherwise the node's LAN host number placed in the plane's CIDR. Using
// the LAN host number keeps addresses stable when nodes are added or removed.
func (s *ClusterSpec) PlaneAddress(n Node, plane Plane) (netip.Addr, error) {
	if a, ok := n.PlaneAddresses[plane]; ok {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("node %s: plane %s address %q: %w", n.Name, plane, a, err)
		}
		return addr, nil
	}
	ps, ok := s.Networking.Planes[plane]
	if !ok {
		return netip.Addr{}, fmt.Errorf("plane %s is not declared", plane)
	}
	planeNet, err := netip.ParsePrefix(ps.CIDR)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("plane %s cidr %q: %w", plane, ps.CIDR, err)
	}
	lan, err := netip.ParsePrefix(s.Networking.LAN.CIDR)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lan cidr %q: %w", s.Networking.LAN.CIDR, err)
	}
	addr, err := netip.ParseAddr(n.Address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node %s address %q: %w", n.Name, n.Address, err)
	}
	host := hostNumber(lan.Masked(), addr)
	out, ok := nthAddr(planeNet.Masked(), host)
	if !ok || !planeNet.Contains(out) || isEdge(planeNet, out) {
		return netip.Addr{}, fmt.Errorf("node %s: host number %s of %s does not fit plane %s %s", n.Name, host, addr, plane, planeNet)
	}
	return out, nil
}

// hostNumber is addr's offset from the network address of prefix.
func hostNumber(prefix netip.Prefix, addr netip.Addr) *big.Int {
	a := new(big.Int).SetBytes(addr.AsSlice())
	b := new(big.Int).SetBytes(prefix.Addr().AsSlice())
	return a.Sub(a, b)
}

func nthAddr(prefix netip.Prefix, n *big.Int) (netip.Addr, bool) {
	base := new(big.Int).SetBytes(prefix.Addr().AsSlice())
	sum := base.Add(base, n)
	size := len(prefix.Addr().AsSlice())
	b := sum.Bytes()
	if sum.Sign() < 0 || len(b) > size {
		return netip.Addr{}, false
	}
	buf := make([]byte, size)
	copy(buf[size-len(b):], b)
	out, ok := netip.AddrFromSlice(buf)
	return out, ok
}

// isEdge reports whether addr is the network or (IPv4) broadcast address of p,
// neither of which a node may hold.
func isEdge(p netip.Prefix, addr netip.Addr) bool {
	p = p.Masked()
	if addr == p.Addr() {
		return p.Bits() < addr.BitLen()-1
	}
	if !addr.Is4() || p.Bits() >= 31 {
		return false
	}
	last, _ := nthAddr(p, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(32-p.Bits())), big.NewInt(1)))
	return addr == last
}

// NodePodCIDR is the /24 of the cluster's pod CIDR a kubelet node's pods
// take their addresses from: the subnet numbered by the node's LAN host
// number (10.20.0.21 in 10.244.0.0/16 → 10.244.21.0/24), so it is stable
// however nodes are added or removed, as plane addresses are.
func (s *ClusterSpec) NodePodCIDR(n Node) (netip.Prefix, error) {
	k := s.Workloads.Kubernetes
	pods, err := netip.ParsePrefix(k.PodCIDR)
	if err != nil || !pods.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("workloads.kubernetes.podCIDR %q: not an IPv4 prefix", k.PodCIDR)
	}
	if pods.Bits() > 16 {
		return netip.Prefix{}, fmt.Errorf("workloads.kubernetes.podCIDR %s: a /16 or larger is needed (a /24 per node, numbered by its LAN host number)", pods)
	}
	lan, err := netip.ParsePrefix(s.Networking.LAN.CIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lan cidr %q: %w", s.Networking.LAN.CIDR, err)
	}
	addr, err := netip.ParseAddr(n.Address)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("node %s address %q: %w", n.Name, n.Address, err)
	}
	host := hostNumber(lan.Masked(), addr)
	if !host.IsInt64() || host.Int64() < 1 || host.Int64() > 255 {
		return netip.Prefix{}, fmt.Errorf("node %s: host number %s of %s does not number a /24 of the pod CIDR", n.Name, host, addr)
	}
	base := pods.Masked().Addr().As4()
	// The /24 index counts from the pod CIDR's base: host h → base + h·256.
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(host.Int64()) << 8
	sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 24)
	if !pods.Contains(sub.Addr()) {
		return netip.Prefix{}, fmt.Errorf("node %s: pod subnet %s is outside workloads.kubernetes.podCIDR %s", n.Name, sub, pods)
	}
	return sub, nil
}
