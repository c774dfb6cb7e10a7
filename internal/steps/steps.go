// Package steps holds the convergence steps of a kubedos cluster: each is a
// converge.Step built on the hub's and the nodes' APIs, with the plan's step
// IDs so that a plan can show each step's last outcome. Gates only check
// (drift fails them); configuration steps check with a dry run and apply.
package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/plan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
)

// Hub is what the steps need of the hub's admin service.
type Hub interface {
	GetNode(ctx context.Context, name string) (*api.Node, error)
}

// Node is what the steps need of one node's API.
type Node interface {
	Planes(ctx context.Context) (*api.Planes, error)
	ConfigApply(ctx context.Context, document string, dryRun bool) (*api.ConfigApplied, error)
	EtcdNode
}

// NamedNode is a node's API with the node's name, for messages.
type NamedNode struct {
	Name string
	API  Node
}

// The node states the gate accepts; the hub's others (pending,
// quarantined, revoked, fenced, replaced) fail it.
const stateEnrolled = "enrolled"

// AttestGate checks that node n is enrolled at the hub, for its spec role,
// and on build when build is not empty. It never changes anything: a node
// that is not there yet or was refused fails the gate, with its state and
// the hub's reason.
func AttestGate(hub Hub, n spec.Node, build string) converge.Step {
	return converge.Step{
		ID: plan.AttestID(n.Name), Phase: plan.PhaseAttest,
		Reads: []string{"hub:nodes/" + n.Name},
		Check: func(ctx context.Context) (converge.State, error) {
			got, err := hub.GetNode(ctx, n.Name)
			if err != nil {
				return converge.State{}, fmt.Errorf("hub: node %s: %w", n.Name, err)
			}
			var why []string
			if got.State != stateEnrolled {
				s := fmt.Sprintf("%s is %s, not enrolled", n.Name, got.State)
				if r := got.Reason; r != nil {
					s += fmt.Sprintf(" (%s: %s)", r.Check, r.Detail)
				}
				why = append(why, s)
			}
			if got.Role != string(n.Role) {
				why = append(why, fmt.Sprintf("%s enrolled as %s, the spec says %s", n.Name, got.Role, n.Role))
			}
			if build != "" && got.State == stateEnrolled && got.BuildID != build {
				why = append(why, fmt.Sprintf("%s runs build %s, the cluster's build is %s", n.Name, got.BuildID, build))
			}
			if len(why) > 0 {
				return converge.State{Diff: strings.Join(why, "\n")}, nil
			}
			return converge.State{Converged: true}, nil
		},
	}
}

// Plane checks that node reports plane p joined, up and without error.
// id is the plan's step ID (the master's side of a plane is the hub's).
func Plane(node NamedNode, p spec.Plane, id string, deps ...string) converge.Step {
	return converge.Step{
		ID: id, Phase: plan.PhaseBackplane, Deps: deps,
		Reads: []string{"node/" + node.Name + ":planes"},
		Check: func(ctx context.Context) (converge.State, error) {
			ps, err := node.API.Planes(ctx)
			if err != nil {
				return converge.State{}, fmt.Errorf("node %s: planes: %w", node.Name, err)
			}
			if diff := planeProblem(node.Name, p, ps, time.Now()); diff != "" {
				return converge.State{Diff: diff}, nil
			}
			return converge.State{Converged: true}, nil
		},
	}
}

// PlaneProblem is what is wrong with node name's side of plane p as its
// Planes report says (not joined, missing, down, last join failed), or ""
// when nothing is: the acceptance gate reports it as the plane step does.
func PlaneProblem(name string, p spec.Plane, ps *api.Planes, now time.Time) string {
	return planeProblem(name, p, ps, now)
}

func planeProblem(name string, p spec.Plane, ps *api.Planes, now time.Time) string {
	if ps.Joined.IsZero() {
		msg := name + " has not joined the planes"
		if ps.Error != "" {
			msg += ": " + ps.Error
		}
		return msg
	}
	i := slices.IndexFunc(ps.Interfaces, func(s wg.Status) bool { return s.Plane == string(p) })
	if i < 0 {
		return fmt.Sprintf("%s reports no %s plane", name, p)
	}
	st := ps.Interfaces[i]
	switch {
	case st.Error != "":
		return fmt.Sprintf("%s: %s (%s): %s", name, st.Interface, p, st.Error)
	case !st.Up:
		return fmt.Sprintf("%s: %s (%s) is down", name, st.Interface, p)
	case ps.Error != "":
		return fmt.Sprintf("%s: last join failed %s after the hub answered: %s", name, now.Sub(ps.Joined).Round(time.Second), ps.Error)
	}
	return ""
}

// ConfigDocument is kubedosd's NodeConfig document for a role's nodes.
func ConfigDocument(rc spec.RoleNodeConfig) string {
	doc := struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Sysctls    map[string]string `json:"sysctls,omitempty"`
	}{spec.APIVersion, "NodeConfig", rc.Sysctls}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return string(b)
}

// NodeConfig keeps the spec's node configuration of role on each of its
// nodes: Check asks every node for a dry run (its diff), Apply applies the
// document on every node (kubedosd leaves an equal document as it is).
func NodeConfig(role spec.Role, rc spec.RoleNodeConfig, nodes []NamedNode, deps ...string) converge.Step {
	doc := ConfigDocument(rc)
	var rw []string
	for _, n := range nodes {
		rw = append(rw, "node/"+n.Name+":config")
	}
	return converge.Step{
		ID: plan.ConvergeID(role), Phase: plan.PhaseConverge, Deps: deps,
		Reads: rw, Writes: rw,
		Check: func(ctx context.Context) (converge.State, error) {
			var diffs []string
			for _, n := range nodes {
				got, err := n.API.ConfigApply(ctx, doc, true)
				if err != nil {
					return converge.State{}, fmt.Errorf("node %s: %w", n.Name, err)
				}
				if got.Changed {
					diffs = append(diffs, fmt.Sprintf("node %s:\n%s", n.Name, strings.TrimRight(got.Diff, "\n")))
				}
			}
			if len(diffs) > 0 {
				return converge.State{Diff: strings.Join(diffs, "\n")}, nil
			}
			return converge.State{Converged: true}, nil
		},
		Apply: func(ctx context.Context) error {
			var errs []error
			for _, n := range nodes {
				if _, err := n.API.ConfigApply(ctx, doc, false); err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
				}
			}
			return errors.Join(errs...)
		},
	}
}
