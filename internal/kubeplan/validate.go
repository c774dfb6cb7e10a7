package kubeplan

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Validate checks a plan received from the hub before the node writes
// anything from it: every address parses, every name is bounded, every
// component is known. The hub is trusted, but a bad plan must fail with
// its field named rather than reach a flag.
func (p *Plan) Validate() error {
	var bad []string
	if p.Version != Version {
		bad = append(bad, fmt.Sprintf("version %q is not this image's %s", p.Version, Version))
	}
	if !nameRE(p.Node) || !nameRE(p.Cluster) {
		bad = append(bad, "node or cluster name is not a DNS label")
	}
	for _, f := range []struct{ name, v string }{{"nodeIP", p.NodeIP}, {"clusterDNS", p.ClusterDNS}} {
		if _, err := netip.ParseAddr(f.v); err != nil {
			bad = append(bad, fmt.Sprintf("%s %q is not an address", f.name, clip(f.v)))
		}
	}
	for _, f := range []struct{ name, v string }{{"clusterCIDR", p.ClusterCIDR}, {"serviceCIDR", p.ServiceCIDR}} {
		if _, err := netip.ParsePrefix(f.v); err != nil {
			bad = append(bad, fmt.Sprintf("%s %q is not a prefix", f.name, clip(f.v)))
		}
	}
	if p.NodePodCIDR != "" {
		if _, err := netip.ParsePrefix(p.NodePodCIDR); err != nil {
			bad = append(bad, fmt.Sprintf("nodePodCIDR %q is not a prefix", clip(p.NodePodCIDR)))
		}
	}
	if slices.Contains(p.Components, Etcd) {
		if _, err := netip.ParseAddr(p.EtcdAddress); err != nil {
			bad = append(bad, fmt.Sprintf("etcdAddress %q is not an address", clip(p.EtcdAddress)))
		}
	} else if p.EtcdAddress != "" {
		bad = append(bad, "etcdAddress given to a node without etcd")
	}
	if len(p.LANAllows) > 4 {
		bad = append(bad, fmt.Sprintf("%d lanAllows (at most 4)", len(p.LANAllows)))
	}
	for _, a := range p.LANAllows {
		if a.Port != EtcdPeerPort && a.Port != EtcdClientPort {
			bad = append(bad, fmt.Sprintf("lanAllows port %d is not etcd's", a.Port))
		}
		if len(a.From) == 0 || len(a.From) > maxLBNodes {
			bad = append(bad, fmt.Sprintf("lanAllows port %d from %d addresses (1..%d)", a.Port, len(a.From), maxLBNodes))
		}
		for _, f := range a.From {
			if _, err := netip.ParseAddr(f); err != nil {
				bad = append(bad, fmt.Sprintf("lanAllows address %q is not an address", clip(f)))
			}
		}
	}
	if len(p.ControlPlanes) > maxLBNodes {
		bad = append(bad, fmt.Sprintf("controlPlanes: %d, at most %d", len(p.ControlPlanes), maxLBNodes))
	}
	for _, c := range p.ControlPlanes {
		if !nameRE(c.Name) {
			bad = append(bad, fmt.Sprintf("control plane %q is not a DNS label", clip(c.Name)))
		}
		if _, err := netip.ParseAddr(c.Address); err != nil {
			bad = append(bad, fmt.Sprintf("control plane %s address %q is not an address", clip(c.Name), clip(c.Address)))
		}
	}
	urls := append([]string{p.APIServer}, p.EtcdServers...)
	for _, m := range p.EtcdMembers {
		if !nameRE(m.Name) {
			bad = append(bad, fmt.Sprintf("etcd member %q is not a DNS label", clip(m.Name)))
		}
		urls = append(urls, m.PeerURL)
	}
	for _, u := range urls {
		if _, err := netip.ParseAddrPort(strings.TrimPrefix(u, "https://")); err != nil || !strings.HasPrefix(u, "https://") {
			bad = append(bad, fmt.Sprintf("URL %q is not https://address:port", clip(u)))
		}
	}
	if !nameRE(strings.ReplaceAll(p.ClusterDomain, ".", "-")) {
		bad = append(bad, fmt.Sprintf("clusterDomain %q", clip(p.ClusterDomain)))
	}
	if p.LB != nil {
		bad = append(bad, p.LB.validate()...)
	}
	if slices.Contains(p.Components, Keepalived) != (p.LB != nil) {
		bad = append(bad, "lb: given without keepalived, or keepalived without it")
	}
	if p.LB != nil && slices.Contains(p.Components, HAProxy) != (p.LB.Track == HAProxy) {
		bad = append(bad, "lb: haproxy runs but keepalived does not track it, or the reverse")
	}
	for _, c := range p.Components {
		if !slices.Contains(Components, c) {
			bad = append(bad, fmt.Sprintf("unknown component %q", clip(string(c))))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kubernetes plan: %s", strings.Join(bad, "; "))
	}
	return nil
}

func nameRE(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}
