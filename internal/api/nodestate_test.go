package api_test

import (
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hub"
)

// TestNodeStatesMatchTheHub holds api's node states to the hub's: clients
// compare api.NodeState values against what the hub sends.
func TestNodeStatesMatchTheHub(t *testing.T) {
	pairs := []struct {
		api api.NodeState
		hub hub.State
	}{
		{api.NodePending, hub.StatePending},
		{api.NodeEnrolled, hub.StateEnrolled},
		{api.NodeQuarantined, hub.StateQuarantined},
		{api.NodeRevoked, hub.StateRevoked},
		{api.NodeFenced, hub.StateFenced},
		{api.NodeReplaced, hub.StateReplaced},
	}
	for _, p := range pairs {
		if string(p.api) != string(p.hub) {
			t.Errorf("api %q, hub %q", p.api, p.hub)
		}
	}
}
