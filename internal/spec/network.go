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
