package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Names inside a segment's namespace: private to it, so fixed.
const (
	segmentBridge = "lan0"
	segmentUplink = "uplink"
)

// Segment is a cluster's LAN: one L2 segment (a bridge) inside a network
// namespace of its own, where every VM has a tap. A veth pair joins it to
// the host, whose end carries the LAN gateway address: the hub listens
// there and the operator reaches each node's API at its spec address. The
// VMs reach nothing but the segment and that gateway (the host does not
// forward), and `down` removes the namespace with everything in it.
type Segment struct {
	Netns   string       // network namespace holding the bridge and the taps
	HostIf  string       // host end of the veth pair
	Gateway netip.Prefix // address of the host end, with the LAN's prefix length
}

// NewSegment names the segment of cluster and checks its addresses: the
// gateway must lie inside cidr. Names derive from the cluster's name so a
// second up finds the same segment.
func NewSegment(cluster, cidr, gateway string) (Segment, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Segment{}, fmt.Errorf("networking.lan.cidr %q: %w", cidr, err)
	}
	gw, err := netip.ParseAddr(gateway)
	if err != nil {
		return Segment{}, fmt.Errorf("networking.lan.gateway %q: %w", gateway, err)
	}
	if !p.Contains(gw) {
		return Segment{}, fmt.Errorf("networking.lan.gateway %s is outside networking.lan.cidr %s", gw, p)
	}
	sum := sha256.Sum256([]byte(cluster))
	return Segment{
		Netns:   "kubedos-" + cluster,
		HostIf:  fmt.Sprintf("kd%x", sum[:4]), // interface names stop at 15 bytes
		Gateway: netip.PrefixFrom(gw, p.Bits()),
	}, nil
}

// NodeAddress is a node's address with the LAN's prefix length, as the
// node configures it (kubedos.address in SMBIOS).
func (s Segment) NodeAddress(addr string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	p := netip.PrefixFrom(a, s.Gateway.Bits())
	if !p.Masked().Contains(s.Gateway.Addr()) {
		return netip.Prefix{}, fmt.Errorf("%s is outside the LAN %s", a, s.Gateway.Masked())
	}
	if a == s.Gateway.Addr() {
		return netip.Prefix{}, fmt.Errorf("%s is the LAN gateway (the host's end, where the hub listens)", a)
	}
	return p, nil
}

// Exists reports whether the segment's namespace exists.
func (s Segment) Exists() bool {
	_, err := os.Stat(filepath.Join("/run/netns", s.Netns))
	return err == nil
}

// Up creates what is missing of the segment: namespace, bridge, veth pair
// and the gateway address. Running it on a whole segment changes nothing.
func (s Segment) Up(ctx context.Context) error {
	if err := s.checkHostOverlap(); err != nil {
		return err
	}
	if !s.Exists() {
		if err := ip(ctx, "netns", "add", s.Netns); err != nil {
			return err
		}
	}
	steps := [][]string{{"-n", s.Netns, "link", "set", "lo", "up"}}
	if !s.nsLinkExists(ctx, segmentBridge) {
		steps = append(steps, []string{"-n", s.Netns, "link", "add", segmentBridge, "type", "bridge"})
	}
	steps = append(steps, []string{"-n", s.Netns, "link", "set", segmentBridge, "up"})
	if _, err := net.InterfaceByName(s.HostIf); err != nil {
		steps = append(steps, []string{"link", "add", s.HostIf, "type", "veth", "peer", "name", segmentUplink, "netns", s.Netns})
	}
	steps = append(steps,
		[]string{"-n", s.Netns, "link", "set", segmentUplink, "master", segmentBridge, "up"},
		[]string{"addr", "replace", s.Gateway.String(), "dev", s.HostIf},
		[]string{"link", "set", s.HostIf, "up"})
	for _, st := range steps {
		if err := ip(ctx, st...); err != nil {
			return fmt.Errorf("LAN segment %s: %w", s.Netns, err)
		}
	}
	return nil
}

// AddTap creates a VM's tap on the bridge, unless it is there. QEMU,
// started inside the namespace, opens it by name.
func (s Segment) AddTap(ctx context.Context, name string) error {
	if !s.nsLinkExists(ctx, name) {
		if err := ip(ctx, "-n", s.Netns, "tuntap", "add", "dev", name, "mode", "tap"); err != nil {
			return err
		}
	}
	return ip(ctx, "-n", s.Netns, "link", "set", name, "master", segmentBridge, "up")
}

// Down deletes the namespace, which takes the bridge, the taps and the
// veth pair with it. A segment that is not there is not an error.
func (s Segment) Down(ctx context.Context) error {
	if s.Exists() {
		if err := ip(ctx, "netns", "del", s.Netns); err != nil {
			return err
		}
	}
	if _, err := net.InterfaceByName(s.HostIf); err == nil {
		if err := ip(ctx, "link", "del", s.HostIf); err != nil {
			// The veth pair goes with the namespace, a moment later: gone
			// by now is what was wanted.
			if _, still := net.InterfaceByName(s.HostIf); still != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// checkHostOverlap refuses a LAN that overlaps a network the host already
// has on another interface: routing to the nodes would be ambiguous.
func (s Segment) checkHostOverlap() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	lan := s.Gateway.Masked()
	for _, ifc := range ifs {
		if ifc.Name == s.HostIf {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			addr, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			if p := netip.PrefixFrom(addr.Unmap(), ones).Masked(); p.Overlaps(lan) {
				return fmt.Errorf("networking.lan.cidr %s overlaps %s on the host's interface %s: choose a LAN the host does not use", lan, p, ifc.Name)
			}
		}
	}
	return nil
}

func (s Segment) nsLinkExists(ctx context.Context, name string) bool {
	return exec.CommandContext(ctx, "ip", "-n", s.Netns, "link", "show", "dev", name).Run() == nil
}

// TAP is a VM's NIC on a Segment.
type TAP struct {
	Netns string // the segment's namespace; QEMU runs inside it
	Name  string // the tap device (AddTap made it)
	MAC   string
}

// MAC is a stable locally administered address for seed (QEMU's own prefix
// 52:54:00), so a node keeps its MAC across ups.
func MAC(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

func ip(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) {
			msg = "install iproute2"
		}
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}
