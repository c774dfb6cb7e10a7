package spec

import (
	"fmt"
	"sort"
	"strings"
)

// quorumGroups are the spec's groups whose members must survive the loss
// of one failure domain together (seed 004 §13.3): the etcd members (the
// etcd nodes, or the control-plane nodes that stack etcd when there are
// none) by majority, the control-plane nodes and the load balancers by
// one member at least. A group of one has nothing to spread.
func quorumGroups(s *ClusterSpec) []placementGroup {
	var gs []placementGroup
	etcd := RoleEtcd
	if s.CountRole(RoleEtcd) == 0 {
		etcd = RoleControlPlane
	}
	gs = append(gs, placementGroup{what: "etcd members", role: etcd, majority: true})
	gs = append(gs, placementGroup{what: "control-plane nodes", role: RoleControlPlane})
	gs = append(gs, placementGroup{what: "load balancers", role: RoleLoadBalancer})
	return gs
}

type placementGroup struct {
	what     string
	role     Role
	majority bool // the group needs a majority alive (a quorum), else one member
}

func nodesWithRole(s *ClusterSpec, r Role) []Node {
	var out []Node
	for _, n := range s.Topology.Nodes {
		if n.Role == r {
			out = append(out, n)
		}
	}
	return out
}

// validatePlacement refuses, when the topology names more than one failure
// domain, a group that one domain's loss would take down: the etcd members
// without a majority, the control-plane nodes or load balancers without
// one member. Every member of such a group must then name its domain.
func validatePlacement(c *problems, s *ClusterSpec) {
	if named := namedDomains(s); len(named) < 2 {
		return
	}
	for _, g := range quorumGroups(s) {
		members := nodesWithRole(s, g.role)
		if len(members) < 2 {
			continue
		}
		byDomain := map[string][]string{}
		for _, n := range members {
			if n.FailureDomain == "" {
				c.add("topology.nodes", "node %s is one of the %s and names no failureDomain, while the topology uses several: name its domain", n.Name, g.what)
				return
			}
			byDomain[n.FailureDomain] = append(byDomain[n.FailureDomain], n.Name)
		}
		for _, d := range sortedKeys(byDomain) {
			lost := len(byDomain[d])
			left := len(members) - lost
			switch {
			case g.majority && left <= len(members)/2:
				c.add("topology.nodes", "failure domain %s holds %d of the %d %s (%s): losing it leaves %d, no quorum; spread them so no domain holds half",
					d, lost, len(members), g.what, strings.Join(byDomain[d], ", "), left)
			case !g.majority && left == 0:
				c.add("topology.nodes", "the %d %s (%s) all share failure domain %s: losing it takes every one; spread them", len(members), g.what, strings.Join(byDomain[d], ", "), d)
			}
		}
	}
}

// PlacementWarnings are what validatePlacement cannot refuse: a topology
// with fewer than two failure domains whose replicated groups then share
// one, so one domain's loss takes them all.
func PlacementWarnings(s *ClusterSpec) []string {
	named := namedDomains(s)
	if len(named) >= 2 {
		return nil
	}
	where := "one failure domain (none is named)"
	if len(named) == 1 {
		where = "failure domain " + named[0]
	}
	var out []string
	for _, g := range quorumGroups(s) {
		if k := s.CountRole(g.role); k >= 2 {
			out = append(out, fmt.Sprintf("the %d %s share %s: losing it loses them all (set failureDomain per node to spread them)", k, g.what, where))
		}
	}
	return out
}

// namedDomains are the failure domains the nodes name, sorted.
func namedDomains(s *ClusterSpec) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range s.Topology.Nodes {
		if d := n.FailureDomain; d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}
