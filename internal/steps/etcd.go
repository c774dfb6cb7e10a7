package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/plan"
)

// The etcd membership steps compare etcd's member list, read through an
// etcd node's API, with the spec's members. A member the spec has and etcd
// does not is a node that has not joined yet: joining is the node's own
// work (kubedosd adds its member when it starts on an empty data
// directory), so the step only waits for it. A member etcd lists and the
// spec does not is removed, one at a time, only with the spec's opt-in
// and only while the members left keep their quorum healthy.
const (
	EtcdRemovedID = plan.WorkloadKubernetes + "/etcd-removed"
	EtcdJoinedID  = plan.WorkloadKubernetes + "/etcd-joined"
)

// OptInRemoveEtcdMembers is the spec's destructive opt-in for removing
// etcd members (destructive.removeEtcdMembers).
const OptInRemoveEtcdMembers = "removeEtcdMembers"

// EtcdNode is what the etcd steps need of an etcd node's API.
type EtcdNode interface {
	Health(ctx context.Context) (*api.Health, error)
	EtcdMembers(ctx context.Context) (*api.EtcdMembers, error)
	EtcdRemoveMember(ctx context.Context, id, name string) (*api.EtcdMembers, error)
}

// EtcdSpecMember is one of the spec's etcd members (kubeplan's name and
// peer URL) with its node's API.
type EtcdSpecMember struct {
	kubeplan.EtcdMember
	API EtcdNode
}

// EtcdDiff is how etcd's members differ from the spec's.
type EtcdDiff struct {
	// Missing are spec members etcd does not list; Starting are those it
	// lists as added but not started yet (no name, the spec's peer URL).
	Missing, Starting []string
	// Extra are members etcd lists that the spec does not have.
	Extra []api.EtcdMember
}

// DiffEtcdMembers compares etcd's list with the spec's members: a started
// member by its name, one not started yet by its peer URL.
func DiffEtcdMembers(want []kubeplan.EtcdMember, got []api.EtcdMember) EtcdDiff {
	var d EtcdDiff
	for _, w := range want {
		switch {
		case slices.ContainsFunc(got, func(m api.EtcdMember) bool { return m.Name == w.Name }):
		case slices.ContainsFunc(got, func(m api.EtcdMember) bool { return m.Name == "" && slices.Contains(m.PeerURLs, w.PeerURL) }):
			d.Starting = append(d.Starting, w.Name)
		default:
			d.Missing = append(d.Missing, w.Name)
		}
	}
	for _, m := range got {
		known := slices.ContainsFunc(want, func(w kubeplan.EtcdMember) bool {
			if m.Name != "" {
				return m.Name == w.Name
			}
			return slices.Contains(m.PeerURLs, w.PeerURL)
		})
		if !known {
			d.Extra = append(d.Extra, m)
		}
	}
	return d
}

// RemovalKeepsQuorum is the rule a removal must pass: the voting members
// left after removing member id must have a quorum of them (more than
// half) healthy, so the cluster can still commit, and so agree to the
// removal, without waiting for a member that may never come back.
// healthy says whether a member is (by its name; one the spec does not
// have counts as not healthy: nobody vouches for it). Removing a learner
// takes no vote away and is always allowed.
func RemovalKeepsQuorum(members []api.EtcdMember, healthy func(name string) bool, id string) error {
	i := slices.IndexFunc(members, func(m api.EtcdMember) bool { return m.ID == id })
	if i < 0 {
		return fmt.Errorf("etcd lists no member %s", id)
	}
	gone := members[i]
	if gone.Learner {
		return nil
	}
	voters, ok := 0, 0
	for _, m := range members {
		if m.ID == id || m.Learner {
			continue
		}
		voters++
		if m.Name != "" && healthy(m.Name) {
			ok++
		}
	}
	quorum := voters/2 + 1
	if voters == 0 || ok < quorum {
		return fmt.Errorf("removing etcd member %s would leave %d healthy of %d voting members, fewer than their quorum of %d: "+
			"bring the members back first", memberName(gone), ok, voters, quorum)
	}
	return nil
}

// memberName names a member for a message: its name (or that it has not
// started), its ID and its first peer URL.
func memberName(m api.EtcdMember) string {
	name := m.Name
	if name == "" {
		name = "(not started)"
	}
	peer := ""
	if len(m.PeerURLs) > 0 {
		peer = ", " + m.PeerURLs[0]
	}
	return fmt.Sprintf("%s (ID %s%s)", name, m.ID, peer)
}

// EtcdRemoved is the destructive step: converged when etcd lists no
// member the spec does not have; Apply removes them one at a time, each
// only if RemovalKeepsQuorum allows it with the members' health as their
// nodes report it (node health's etcd check), through a spec member's
// node. It needs destructive.removeEtcdMembers.
func EtcdRemoved(members []EtcdSpecMember, deps ...string) converge.Step {
	return converge.Step{
		ID: EtcdRemovedID, Phase: plan.PhaseWorkload, Deps: deps, Destructive: OptInRemoveEtcdMembers,
		Reads: []string{"etcd:members"}, Writes: []string{"etcd:members"},
		Check: func(ctx context.Context) (converge.State, error) {
			got, _, err := listEtcd(ctx, members)
			if err != nil {
				return converge.State{}, err
			}
			if d := DiffEtcdMembers(wanted(members), got.Members); len(d.Extra) > 0 {
				var names []string
				for _, m := range d.Extra {
					names = append(names, memberName(m))
				}
				return converge.State{Diff: "etcd members the spec does not have: " + strings.Join(names, ", ")}, nil
			}
			return converge.State{Converged: true}, nil
		},
		Apply: func(ctx context.Context) error {
			for range api.MaxEtcdMembers {
				got, via, err := listEtcd(ctx, members)
				if err != nil {
					return err
				}
				d := DiffEtcdMembers(wanted(members), got.Members)
				if len(d.Extra) == 0 {
					return nil
				}
				gone := d.Extra[0]
				healthy := etcdHealth(ctx, members)
				if err := RemovalKeepsQuorum(got.Members, func(name string) bool { return healthy[name] }, gone.ID); err != nil {
					return err
				}
				if _, err := via.API.EtcdRemoveMember(ctx, gone.ID, gone.Name); err != nil {
					return fmt.Errorf("removing etcd member %s through %s: %w", memberName(gone), via.Name, err)
				}
			}
			return errors.New("etcd members: still more to remove after as many removals as etcd may have members")
		},
	}
}

// EtcdJoined is the gate on every spec member being listed by etcd and
// started: a node that has not joined yet is waited for (its kubedosd
// adds it), never added from here.
func EtcdJoined(members []EtcdSpecMember, deps ...string) converge.Step {
	return converge.Step{
		ID: EtcdJoinedID, Phase: plan.PhaseWorkload, Deps: deps, Reads: []string{"etcd:members"},
		Check: func(ctx context.Context) (converge.State, error) {
			got, _, err := listEtcd(ctx, members)
			if err != nil {
				return converge.State{}, err
			}
			d := DiffEtcdMembers(wanted(members), got.Members)
			var why []string
			for _, n := range d.Missing {
				why = append(why, n+" has not joined etcd")
			}
			for _, n := range d.Starting {
				why = append(why, n+" was added to etcd and has not started")
			}
			if len(why) > 0 {
				return converge.State{Diff: strings.Join(why, "\n")}, nil
			}
			return converge.State{Converged: true}, nil
		},
	}
}

func wanted(members []EtcdSpecMember) []kubeplan.EtcdMember {
	out := make([]kubeplan.EtcdMember, 0, len(members))
	for _, m := range members {
		out = append(out, m.EtcdMember)
	}
	return out
}

// listEtcd reads the member list through the first spec member (spec
// order) whose node answers, and says which.
func listEtcd(ctx context.Context, members []EtcdSpecMember) (*api.EtcdMembers, EtcdSpecMember, error) {
	var errs []error
	for _, m := range members {
		got, err := m.API.EtcdMembers(ctx)
		if err == nil {
			return got, m, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, EtcdSpecMember{}, fmt.Errorf("etcd member list: no etcd node answered: %w", errors.Join(errs...))
}

// etcdHealth asks each spec member's node for its etcd check; a node that
// does not answer counts as not healthy.
func etcdHealth(ctx context.Context, members []EtcdSpecMember) map[string]bool {
	out := map[string]bool{}
	for _, m := range members {
		h, err := m.API.Health(ctx)
		if err != nil {
			continue
		}
		out[m.Name], _ = EtcdCheck(h)
	}
	return out
}

// EtcdCheck reads the "etcd" check of a node's health; a node without
// that check (no etcd, or a kubedosd before it) is not healthy: nobody
// can tell.
func EtcdCheck(h *api.Health) (bool, string) {
	for _, c := range h.Checks {
		if c.Name == "etcd" {
			return c.OK, c.Detail
		}
	}
	return false, "no etcd health check (not running etcd yet, or unreachable)"
}
