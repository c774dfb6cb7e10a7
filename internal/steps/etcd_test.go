package steps_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/steps"
)

// fakeEtcdCluster is etcd's member list as every etcd node's API sees it,
// with each node's health check.
type fakeEtcdCluster struct {
	mu      sync.Mutex
	members []api.EtcdMember
	healthy map[string]bool
	down    map[string]bool // node APIs that do not answer
	removed []string        // "id name" of each removal, in order
}

type fakeEtcdNode struct {
	c    *fakeEtcdCluster
	name string
}

func (n fakeEtcdNode) Health(context.Context) (*api.Health, error) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.down[n.name] {
		return nil, errors.New("connection refused")
	}
	return &api.Health{Checks: []api.HealthCheck{{Name: "etcd", OK: n.c.healthy[n.name]}}}, nil
}

func (n fakeEtcdNode) EtcdMembers(context.Context) (*api.EtcdMembers, error) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.down[n.name] {
		return nil, errors.New("connection refused")
	}
	return &api.EtcdMembers{Node: n.name, Members: slices.Clone(n.c.members)}, nil
}

func (n fakeEtcdNode) EtcdRemoveMember(_ context.Context, id, name string) (*api.EtcdMembers, error) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	n.c.removed = append(n.c.removed, id+" "+name)
	n.c.members = slices.DeleteFunc(n.c.members, func(m api.EtcdMember) bool { return m.ID == id && m.Name == name })
	return &api.EtcdMembers{Node: n.name, Members: slices.Clone(n.c.members)}, nil
}

func member(id, name, addr string) api.EtcdMember {
	return api.EtcdMember{ID: id, Name: name, PeerURLs: []string{"https://" + addr + ":2380"}}
}

var (
	cp1 = member("11", "cp-1", "10.50.0.11")
	cp2 = member("12", "cp-2", "10.50.0.12")
	cp3 = member("13", "cp-3", "10.50.0.13")
	old = member("14", "cp-old", "10.50.0.14")
)

// The spec's members: cp-1, cp-2, cp-3.
func specMembers(c *fakeEtcdCluster) []steps.EtcdSpecMember {
	var out []steps.EtcdSpecMember
	for _, m := range []api.EtcdMember{cp1, cp2, cp3} {
		out = append(out, steps.EtcdSpecMember{EtcdMember: kubeplan.EtcdMember{Name: m.Name, PeerURL: m.PeerURLs[0]},
			API: fakeEtcdNode{c, m.Name}})
	}
	return out
}

// The etcd steps' decisions: in sync, a spec member not joined (waited
// for, never added), one added but not started, a member the spec no
// longer has (refused without the opt-in, naming it and the opt-in;
// removed with it; refused when the members left would not keep their
// quorum healthy), an etcd node that does not answer.
func TestEtcdSteps(t *testing.T) {
	allHealthy := map[string]bool{"cp-1": true, "cp-2": true, "cp-3": true}
	tests := []struct {
		name    string
		members []api.EtcdMember
		healthy map[string]bool
		down    map[string]bool
		optIn   bool
		check   bool // check only
		want    map[string]string
		removed []string
		left    []string // member names after the run
	}{
		{name: "in sync", members: []api.EtcdMember{cp1, cp2, cp3}, healthy: allHealthy,
			want: map[string]string{steps.EtcdRemovedID: "unchanged", steps.EtcdJoinedID: "unchanged"},
			left: []string{"cp-1", "cp-2", "cp-3"}},
		{name: "a spec member not joined yet", members: []api.EtcdMember{cp1, cp2}, healthy: allHealthy, optIn: true,
			want: map[string]string{steps.EtcdRemovedID: "unchanged",
				steps.EtcdJoinedID: "failed: drifted: cp-3 has not joined etcd"},
			left: []string{"cp-1", "cp-2"}},
		{name: "a spec member added, not started", members: []api.EtcdMember{cp1, cp2, {ID: "99", PeerURLs: cp3.PeerURLs}},
			healthy: allHealthy,
			want: map[string]string{steps.EtcdRemovedID: "unchanged",
				steps.EtcdJoinedID: "failed: drifted: cp-3 was added to etcd and has not started"},
			left: []string{"cp-1", "cp-2", ""}},
		{name: "an extra member without the opt-in", members: []api.EtcdMember{cp1, cp2, cp3, old}, healthy: allHealthy,
			want: map[string]string{steps.EtcdJoinedID: "unchanged",
				steps.EtcdRemovedID: "failed: destructive step not allowed: etcd members the spec does not have: " +
					"cp-old (ID 14, https://10.50.0.14:2380): applying it is destructive; the spec must opt in (destructive.removeEtcdMembers)"},
			left: []string{"cp-1", "cp-2", "cp-3", "cp-old"}},
		{name: "an extra member, checked only", members: []api.EtcdMember{cp1, cp2, cp3, old}, healthy: allHealthy,
			optIn: true, check: true,
			want: map[string]string{steps.EtcdRemovedID: "drifted", steps.EtcdJoinedID: "unchanged"},
			left: []string{"cp-1", "cp-2", "cp-3", "cp-old"}},
		{name: "an extra member with the opt-in", members: []api.EtcdMember{cp1, cp2, cp3, old}, healthy: allHealthy, optIn: true,
			want:    map[string]string{steps.EtcdRemovedID: "changed", steps.EtcdJoinedID: "unchanged"},
			removed: []string{"14 cp-old"}, left: []string{"cp-1", "cp-2", "cp-3"}},
		{name: "a replaced member: the old one removed, the new one waited for",
			members: []api.EtcdMember{cp1, cp2, old}, healthy: map[string]bool{"cp-1": true, "cp-2": true}, optIn: true,
			want: map[string]string{steps.EtcdRemovedID: "changed",
				steps.EtcdJoinedID: "failed: drifted: cp-3 has not joined etcd"},
			removed: []string{"14 cp-old"}, left: []string{"cp-1", "cp-2"}},
		{name: "two extra members, one not started", members: []api.EtcdMember{cp1, cp2, cp3, old, member("15", "", "10.50.0.15")},
			healthy: allHealthy, optIn: true,
			want:    map[string]string{steps.EtcdRemovedID: "changed", steps.EtcdJoinedID: "unchanged"},
			removed: []string{"14 cp-old", "15 "}, left: []string{"cp-1", "cp-2", "cp-3"}},
		{name: "removal refused: the members left would lose their quorum",
			members: []api.EtcdMember{cp1, cp2, cp3, old}, healthy: map[string]bool{"cp-1": true}, optIn: true,
			want: map[string]string{steps.EtcdJoinedID: "unchanged",
				steps.EtcdRemovedID: "failed: apply: removing etcd member cp-old (ID 14, https://10.50.0.14:2380) would leave 1 healthy of 3 voting members, fewer than their quorum of 2"},
			left: []string{"cp-1", "cp-2", "cp-3", "cp-old"}},
		{name: "removal refused: a node that does not answer is not healthy",
			members: []api.EtcdMember{cp1, cp2, cp3, old}, healthy: allHealthy, down: map[string]bool{"cp-2": true, "cp-3": true}, optIn: true,
			want: map[string]string{steps.EtcdJoinedID: "unchanged",
				steps.EtcdRemovedID: "failed: apply: removing etcd member cp-old (ID 14, https://10.50.0.14:2380) would leave 1 healthy of 3 voting members"},
			left: []string{"cp-1", "cp-2", "cp-3", "cp-old"}},
		{name: "the list read through the next node when one does not answer",
			members: []api.EtcdMember{cp1, cp2, cp3, old}, healthy: allHealthy, down: map[string]bool{"cp-1": true}, optIn: true,
			want:    map[string]string{steps.EtcdRemovedID: "changed", steps.EtcdJoinedID: "unchanged"},
			removed: []string{"14 cp-old"}, left: []string{"cp-1", "cp-2", "cp-3"}},
		{name: "no etcd node answers", members: []api.EtcdMember{cp1, cp2, cp3}, healthy: allHealthy,
			down: map[string]bool{"cp-1": true, "cp-2": true, "cp-3": true},
			want: map[string]string{steps.EtcdRemovedID: "failed: etcd member list: no etcd node answered: cp-1: connection refused",
				steps.EtcdJoinedID: "failed: etcd member list: no etcd node answered"},
			left: []string{"cp-1", "cp-2", "cp-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeEtcdCluster{members: slices.Clone(tt.members), healthy: tt.healthy, down: tt.down}
			ms := specMembers(c)
			g := converge.New()
			for _, s := range []converge.Step{steps.EtcdRemoved(ms), steps.EtcdJoined(ms)} {
				if err := g.Add(s); err != nil {
					t.Fatal(err)
				}
			}
			opt := converge.Options{Retries: -1, CheckOnly: tt.check}
			if tt.optIn {
				opt.AllowDestructive = []string{"removeEtcdMembers"}
			}
			rec, _ := g.Converge(context.Background(), opt)
			got := outcomes(rec)
			for id, want := range tt.want {
				if !strings.HasPrefix(got[id], want) {
					t.Errorf("%s:\n got %q\nwant %q…", id, got[id], want)
				}
			}
			if !slices.Equal(c.removed, tt.removed) {
				t.Errorf("removed %q, want %q", c.removed, tt.removed)
			}
			var left []string
			for _, m := range c.members {
				left = append(left, m.Name)
			}
			if !slices.Equal(left, tt.left) {
				t.Errorf("members left %q, want %q", left, tt.left)
			}
		})
	}
}

// The quorum rule: the voting members left after the removal must have
// more than half of them healthy; a learner takes no vote.
func TestRemovalKeepsQuorum(t *testing.T) {
	learner := member("21", "cp-l", "10.50.0.21")
	learner.Learner = true
	tests := []struct {
		name    string
		members []api.EtcdMember
		healthy []string
		remove  string
		wantErr string
	}{
		{"3 left, all healthy", []api.EtcdMember{cp1, cp2, cp3, old}, []string{"cp-1", "cp-2", "cp-3"}, "14", ""},
		{"3 left, 2 healthy", []api.EtcdMember{cp1, cp2, cp3, old}, []string{"cp-1", "cp-2"}, "14", ""},
		{"3 left, 1 healthy", []api.EtcdMember{cp1, cp2, cp3, old}, []string{"cp-1"}, "14", "1 healthy of 3 voting members, fewer than their quorum of 2"},
		{"2 left, both healthy", []api.EtcdMember{cp1, cp2, old}, []string{"cp-1", "cp-2"}, "14", ""},
		{"2 left, 1 healthy", []api.EtcdMember{cp1, cp2, old}, []string{"cp-1", "cp-old"}, "14", "1 healthy of 2 voting members, fewer than their quorum of 2"},
		{"4 left, 2 healthy", []api.EtcdMember{cp1, cp2, cp3, old, member("15", "cp-5", "10.50.0.15")}, []string{"cp-1", "cp-2"}, "15",
			"2 healthy of 4 voting members, fewer than their quorum of 3"},
		{"the last voter", []api.EtcdMember{old}, []string{"cp-old"}, "14", "0 healthy of 0 voting members"},
		{"a learner never counts", []api.EtcdMember{cp1, cp2, learner, old}, []string{"cp-1", "cp-l"}, "14",
			"1 healthy of 2 voting members"},
		{"removing a learner takes no vote", []api.EtcdMember{cp1, cp2, cp3, learner}, nil, "21", ""},
		{"a member not started is not healthy", []api.EtcdMember{cp1, member("16", "", "10.50.0.16"), old}, []string{"cp-1", ""}, "14",
			"1 healthy of 2 voting members"},
		{"no such member", []api.EtcdMember{cp1, cp2, cp3}, []string{"cp-1", "cp-2", "cp-3"}, "99", "etcd lists no member 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := steps.RemovalKeepsQuorum(tt.members, func(n string) bool { return slices.Contains(tt.healthy, n) }, tt.remove)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}
