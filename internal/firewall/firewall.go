// Package firewall is a node's baseline nftables ruleset (DESIGN.md §5):
// whatever arrives on a WireGuard plane is trusted; from the LAN a node
// accepts only the planes' WireGuard ports and the kubedos services it
// serves, each of which authenticates its callers by mTLS (and on a load
// balancer, VRRP from the other load balancers and the API VIP's port,
// which the API servers behind it authenticate). Everything else
// inbound is dropped, and nothing is forwarded except between planes.
package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Table is the nftables table kubedos owns (family inet: IPv4 and IPv6).
// Nothing else on the node is touched.
const Table = "kubedos"

// Baseline is what a node accepts from outside its planes.
type Baseline struct {
	// Planes are the WireGuard interfaces; traffic arriving on them is
	// trusted, and may be forwarded from one to another (the master routes
	// between the nodes of a plane).
	Planes []string
	// Pods are the pod bridges (cni0 on a kubelet node): trusted like the
	// planes, and forwarded to and from them (pod traffic to other nodes
	// rides the kubernetes plane).
	Pods []string
	// WireGuardPorts are the planes' UDP listen ports, open on the LAN.
	WireGuardPorts []int
	// TCPPorts are the services served on the LAN (node API, metrics, and
	// the hub on the master).
	TCPPorts []int
	// VRRPPeers are the addresses VRRP (IP protocol 112) is accepted from:
	// on a load balancer, the other load balancers, whose keepalived
	// advertises to this one by unicast. From anyone else VRRP is dropped,
	// so no stranger can claim the VIP.
	VRRPPeers []netip.Addr
	// Services are address:port pairs TCP is accepted to from anywhere: on
	// a load balancer, the API VIP's 6443 (served by haproxy while this
	// node holds the VIP).
	Services []netip.AddrPort
	// Allowed are TCP ports accepted from the LAN from listed sources
	// only: on an etcd member, its peer port from the other members and
	// its client port from the API servers.
	Allowed []Allowed
}

// Allowed is one TCP port and the addresses it is accepted from.
type Allowed struct {
	Port int
	From []netip.Addr
}

// vrrp is VRRP's IP protocol number (by number: /etc/protocols may be absent).
const vrrp = 112

var ifnameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// Ruleset is the nft script that replaces the kubedos table in one
// transaction (an existing table is deleted and defined anew, atomically:
// no moment without rules). Bad interface names or ports are an error
// naming them.
func (b Baseline) Ruleset() (string, error) {
	var problems []string
	for _, p := range append(slices.Clone(b.Planes), b.Pods...) {
		if !ifnameRE.MatchString(p) {
			problems = append(problems, fmt.Sprintf("plane interface %q is not an interface name", p))
		}
	}
	for _, ports := range [][]int{b.WireGuardPorts, b.TCPPorts} {
		for _, p := range ports {
			if p < 1 || p > 65535 {
				problems = append(problems, fmt.Sprintf("port %d is out of range", p))
			}
		}
	}
	for _, a := range b.VRRPPeers {
		if !a.IsValid() {
			problems = append(problems, "a VRRP peer is not an address")
		}
	}
	for _, a := range b.Services {
		if !a.IsValid() || a.Port() == 0 {
			problems = append(problems, fmt.Sprintf("service %s is not an address and port", a))
		}
	}
	for _, a := range b.Allowed {
		if a.Port < 1 || a.Port > 65535 || len(a.From) == 0 {
			problems = append(problems, fmt.Sprintf("allowed port %d from %d address(es)", a.Port, len(a.From)))
		}
		for _, f := range a.From {
			if !f.IsValid() {
				problems = append(problems, fmt.Sprintf("allowed port %d from an invalid address", a.Port))
			}
		}
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("firewall: %s", strings.Join(problems, "; "))
	}
	var s strings.Builder
	fmt.Fprintf(&s, "table inet %s\ndelete table inet %s\ntable inet %s {\n", Table, Table, Table)
	s.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n")
	s.WriteString("\t\tct state established,related accept\n\t\tct state invalid drop\n")
	// ICMP and ICMPv6 by number: names need /etc/protocols, which a
	// minimal image does not have.
	s.WriteString("\t\tiifname \"lo\" accept\n\t\tmeta l4proto { 1, 58 } accept\n")
	trusted := ifnames(append(slices.Clone(b.Planes), b.Pods...))
	if trusted != "" {
		fmt.Fprintf(&s, "\t\tiifname %s accept\n", trusted)
	}
	if set := ports(b.WireGuardPorts); set != "" {
		fmt.Fprintf(&s, "\t\tudp dport %s accept\n", set)
	}
	if set := ports(b.TCPPorts); set != "" {
		fmt.Fprintf(&s, "\t\ttcp dport %s accept\n", set)
	}
	for _, fam := range families(b.VRRPPeers) {
		fmt.Fprintf(&s, "\t\t%s saddr %s meta l4proto %d accept\n", fam.name, fam.set, vrrp)
	}
	for _, a := range slices.Compact(slices.SortedFunc(slices.Values(b.Services), netip.AddrPort.Compare)) {
		fmt.Fprintf(&s, "\t\t%s daddr %s tcp dport %d accept\n", family(a.Addr()), a.Addr().Unmap(), a.Port())
	}
	for _, a := range b.Allowed {
		for _, fam := range families(a.From) {
			fmt.Fprintf(&s, "\t\t%s saddr %s tcp dport %d accept\n", fam.name, fam.set, a.Port)
		}
	}
	s.WriteString("\t}\n")
	s.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n")
	s.WriteString("\t\tct state established,related accept\n")
	if trusted != "" {
		fmt.Fprintf(&s, "\t\tiifname %s oifname %s accept\n", trusted, trusted)
	}
	s.WriteString("\t}\n}\n")
	return s.String(), nil
}

func ifnames(names []string) string {
	if len(names) == 0 {
		return ""
	}
	q := make([]string, 0, len(names))
	for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
		q = append(q, strconv.Quote(n))
	}
	return "{ " + strings.Join(q, ", ") + " }"
}

func family(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ip"
	}
	return "ip6"
}

type addrSet struct{ name, set string }

// families splits addrs into an nft set per address family, IPv4 first.
func families(addrs []netip.Addr) []addrSet {
	by := map[string][]string{}
	for _, a := range slices.Compact(slices.SortedFunc(slices.Values(addrs), netip.Addr.Compare)) {
		by[family(a)] = append(by[family(a)], a.Unmap().String())
	}
	var out []addrSet
	for _, f := range []string{"ip", "ip6"} {
		if len(by[f]) > 0 {
			out = append(out, addrSet{f, "{ " + strings.Join(by[f], ", ") + " }"})
		}
	}
	return out
}

func ports(ps []int) string {
	if len(ps) == 0 {
		return ""
	}
	var out []string
	for _, p := range slices.Compact(slices.Sorted(slices.Values(ps))) {
		out = append(out, strconv.Itoa(p))
	}
	return "{ " + strings.Join(out, ", ") + " }"
}

// nft runs nft(8); the integration test points it into its namespace.
var nft = []string{"nft"}

// Apply loads the baseline with nft(8) (the image carries nftables).
func Apply(ctx context.Context, b Baseline) error {
	script, err := b.Ruleset()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, nft[0], append(nft[1:], "-f", "-")...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("firewall: nft -f: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
