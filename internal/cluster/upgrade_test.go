package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
)

func TestRollUpgrade(t *testing.T) {
	nodes := []string{"master", "w-1", "w-2"}
	for _, tc := range []struct {
		name      string
		fail      string // the node whose upgrade fails
		noOutcome bool   // it fails before an outcome (refused payload, unreachable)
		tried     []string
		reported  []string
		err       string
	}{
		{name: "all upgrade", tried: nodes, reported: nodes},
		{name: "second rolls back", fail: "w-1", tried: []string{"master", "w-1"}, reported: []string{"master", "w-1"}, err: "stopped at w-1"},
		{name: "first refused", fail: "master", noOutcome: true, tried: []string{"master"}, err: "stopped at master"},
		{name: "last unreachable", fail: "w-2", noOutcome: true, tried: nodes, reported: []string{"master", "w-1"}, err: "stopped at w-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tried, reported []string
			outs, err := Roll(context.Background(), nodes, func(_ context.Context, name string) (*Outcome, error) {
				tried = append(tried, name)
				if name != tc.fail {
					return &Outcome{Node: name, Result: "upgraded"}, nil
				}
				if tc.noOutcome {
					return nil, errors.New("refused")
				}
				return &Outcome{Node: name, Result: "rolled-back"}, ErrRolledBack
			}, func(o *Outcome) { reported = append(reported, o.Node) })
			if !slices.Equal(tried, tc.tried) {
				t.Errorf("tried %v, want %v", tried, tc.tried)
			}
			if !slices.Equal(reported, tc.reported) || len(outs) != len(tc.reported) {
				t.Errorf("reported %v (%d outcomes), want %v", reported, len(outs), tc.reported)
			}
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Roll(ctx, nodes, func(context.Context, string) (*Outcome, error) {
		t.Error("upgraded a node after the roll was cancelled")
		return nil, nil
	}, func(*Outcome) {}); err == nil {
		t.Error("a cancelled roll reported success")
	}
}

func TestRunsSettled(t *testing.T) {
	good := &api.BootState{Entry: "kubedos-b.conf"}
	for _, tc := range []struct {
		name string
		v    *api.NodeVersion
		want bool
	}{
		{"settled on it", &api.NodeVersion{BuildID: "b2", Boot: good}, true},
		{"another build", &api.NodeVersion{BuildID: "b1", Boot: good}, false},
		{"on trial", &api.NodeVersion{BuildID: "b2", Boot: &api.BootState{Trial: true}}, false},
		{"boot state unreadable", &api.NodeVersion{BuildID: "b2", Boot: &api.BootState{Error: "no ESP"}}, false},
		{"no boot state", &api.NodeVersion{BuildID: "b2"}, false},
	} {
		if got := RunsSettled(tc.v, "b2"); got != tc.want {
			t.Errorf("%s: runsSettled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A roll goes in the spec's order, not by name: whoever wrote the spec
// put the nodes in the order they may go down in.
func TestRollOrder(t *testing.T) {
	s := &spec.ClusterSpec{Topology: spec.Topology{Nodes: []spec.Node{{Name: "w-2"}, {Name: "master"}, {Name: "w-1"}}}}
	if got, want := RollOrder(s), []string{"w-2", "master", "w-1"}; !slices.Equal(got, want) {
		t.Errorf("RollOrder = %v, want %v", got, want)
	}
}
