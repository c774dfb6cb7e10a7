package spec

import (
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
)

// TestPlacement: with several failure domains, a domain whose loss takes
// etcd's quorum, every control-plane node or every load balancer is
// refused; with one (or none named) the spec is valid with a warning.
func TestPlacement(t *testing.T) {
	byName := func(s *ClusterSpec, name string) *Node {
		for i := range s.Topology.Nodes {
			if s.Topology.Nodes[i].Name == name {
				return &s.Topology.Nodes[i]
			}
		}
		t.Fatalf("no node %s", name)
		return nil
	}
	for _, tc := range []struct {
		name     string
		change   func(s *ClusterSpec)
		want     string // a refusal containing this ("" valid)
		warnings int
	}{
		{name: "reference, spread", change: func(*ClusterSpec) {}},
		{name: "two etcd in rack-a", change: func(s *ClusterSpec) { byName(s, "etcd-2").FailureDomain = "rack-a" },
			want: "failure domain rack-a holds 2 of the 3 etcd members (etcd-1, etcd-2): losing it leaves 1, no quorum"},
		{name: "control plane in one rack", change: func(s *ClusterSpec) {
			byName(s, "cp-2").FailureDomain, byName(s, "cp-3").FailureDomain = "rack-a", "rack-a"
		}, want: "the 3 control-plane nodes (cp-1, cp-2, cp-3) all share failure domain rack-a"},
		// Two of three control-plane nodes in one rack still leave one.
		{name: "two control-plane nodes in one rack", change: func(s *ClusterSpec) { byName(s, "cp-2").FailureDomain = "rack-a" }},
		{name: "a quorum member without a domain", change: func(s *ClusterSpec) { byName(s, "etcd-3").FailureDomain = "" },
			want: "node etcd-3 is one of the etcd members and names no failureDomain"},
		{name: "no domains at all", change: func(s *ClusterSpec) {
			for i := range s.Topology.Nodes {
				s.Topology.Nodes[i].FailureDomain = ""
			}
			s.Storage.Ceph.Enabled = false
		}, warnings: 3},
		{name: "one domain", change: func(s *ClusterSpec) {
			for i := range s.Topology.Nodes {
				s.Topology.Nodes[i].FailureDomain = "rack-a"
			}
		}, warnings: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadBytes(examples.Reference)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(s)
			ps := Validate(s)
			if tc.want == "" {
				if len(ps) != 0 {
					t.Fatalf("refused: %v", ps)
				}
			} else if len(ps) != 1 || ps[0].Path != "topology.nodes" || !strings.Contains(ps[0].Message, tc.want) {
				t.Fatalf("problems %v, want one at topology.nodes containing %q", ps, tc.want)
			}
			if w := PlacementWarnings(s); len(w) != tc.warnings {
				t.Errorf("warnings %q, want %d", w, tc.warnings)
			}
		})
	}
	// The local examples have one node per replicated role: nothing to say.
	for name, doc := range map[string][]byte{"local": examples.Local, "local-k8s": examples.LocalK8s} {
		s, err := LoadBytes(doc)
		if err != nil {
			t.Fatal(err)
		}
		if w := PlacementWarnings(s); len(w) != 0 {
			t.Errorf("%s: warnings %q", name, w)
		}
	}
}
