package spec

import (
	"testing"

	"github.com/kubedos/kubedos/examples"
)

func TestPlaneAddress(t *testing.T) {
	s := mustParse(t, examples.Reference)
	tests := []struct {
		node  string
		plane Plane
		want  string
	}{
		{"master", PlaneControl, "10.77.0.10"},
		{"etcd-2", PlaneObservability, "10.78.0.22"},
		{"lb-3", PlaneKubernetes, "10.79.0.53"},
	}
	for _, tt := range tests {
		n, _ := s.NodeByName(tt.node)
		got, err := s.PlaneAddress(n, tt.plane)
		if err != nil || got.String() != tt.want {
			t.Errorf("%s on %s: got %v %v, want %s", tt.node, tt.plane, got, err, tt.want)
		}
	}
	n, _ := s.NodeByName("w-1")
	n.PlaneAddresses = map[Plane]string{PlaneControl: "10.77.0.200"}
	if got, err := s.PlaneAddress(n, PlaneControl); err != nil || got.String() != "10.77.0.200" {
		t.Errorf("override: got %v %v", got, err)
	}
	// Removing a node does not move anyone else's address.
	before, _ := s.PlaneAddress(s.Topology.Nodes[15], PlaneControl)
	s.Topology.Nodes = append(s.Topology.Nodes[:3], s.Topology.Nodes[4:]...)
	after, _ := s.PlaneAddress(s.Topology.Nodes[14], PlaneControl)
	if before != after {
		t.Errorf("address moved from %v to %v when another node was removed", before, after)
	}
}
