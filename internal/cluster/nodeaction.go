package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
)

// NodeVerb is what the hub is asked to do to a node.
type NodeVerb string

const (
	NodeRevoke  NodeVerb = "revoke"
	NodeFence   NodeVerb = "fence"
	NodeReplace NodeVerb = "replace"
)

// Bounds on taking a node out of Kubernetes: the drain as a whole, and
// each of cordon and delete (a dial to an API server that does not answer
// is otherwise left to the kernel's retries).
const (
	DrainTimeout    = 2 * time.Minute
	kubeStepTimeout = 30 * time.Second
)

// NodeAction is one revoke, fence or replace.
type NodeAction struct {
	Verb         NodeVerb
	Name, Reason string
	// Spec is the cluster's (nil: the hub alone acts). When it enables
	// Kubernetes and the node runs a kubelet, the node is then cordoned,
	// drained and its Node object deleted.
	Spec *spec.ClusterSpec
	// Stop stops the node's VM once the hub acted (nil: not stopped).
	Stop func(ctx context.Context, name string) (target.Ensured, error)
	// NewKube makes the Kubernetes client from the hub's admin credential
	// (nil: kube.New); tests aim it at a fake API server.
	NewKube func(kube.Credentials) (*kube.Client, error)
	// Kube is an API server client its caller already holds (the drill's,
	// the gate's): used instead of asking the hub for another admin
	// credential (nil: one is asked for).
	Kube *kube.Client
}

// NodeActed is the outcome: the hub's record of the node (its fields at
// the top level, as node get prints them), the VM stopped and what was
// done in Kubernetes.
type NodeActed struct {
	*api.Node
	VM         *target.Ensured `json:"vm,omitempty"`
	Kubernetes *KubeRemoval    `json:"kubernetes,omitempty"`
}

// KubeRemoval is how a revoked node was taken out of Kubernetes.
type KubeRemoval struct {
	Node   string `json:"node"`
	Server string `json:"server,omitempty"`
	// Steps are cordon, drain and delete, in order, as far as they went.
	Steps []KubeStep `json:"steps,omitempty"`
	// Unreachable says why Kubernetes was not reached (no admin
	// credential, the API server not answering); the steps after are not
	// taken. The revocation stands regardless: the hub's refusal is what
	// protects the cluster.
	Unreachable string `json:"unreachable,omitempty"`
	// KubeletCertificateExpiresBy bounds the node's kubelet client
	// certificate: issued at the latest now, it lives at most the spec's
	// kubeletClientCertificateLifetime, and the hub renews it no more.
	KubeletCertificateExpiresBy time.Time `json:"kubeletCertificateExpiresBy"`
	// VMStopped: the node's VM was stopped, so its kubelet cannot
	// re-create the Node object before its certificate expires.
	VMStopped bool `json:"vmStopped"`
	// verb is what the hub did, for the hint on retrying.
	verb NodeVerb
}

// KubeStep is one step: cordon, drain or delete.
type KubeStep struct {
	Step    string        `json:"step"`
	OK      bool          `json:"ok"`
	Detail  string        `json:"detail,omitempty"`
	Drained *kube.Drained `json:"drained,omitempty"`
}

// Lines is the removal for a person, one line each.
func (k *KubeRemoval) Lines() []string {
	var out []string
	for _, s := range k.Steps {
		word := "done"
		if !s.OK {
			word = "FAILED"
		}
		out = append(out, fmt.Sprintf("Kubernetes: %s %s: %s: %s", s.Step, k.Node, word, s.Detail))
	}
	by := k.KubeletCertificateExpiresBy.UTC().Format(time.RFC3339)
	switch {
	case k.Unreachable != "":
		// A replace is not run again: once the fresh machine enrolled
		// under the name it would retire that one.
		retry := fmt.Sprintf("run kubedos node %s %s --spec SPEC again once Kubernetes answers", k.verb, k.Node)
		if k.verb == NodeReplace {
			retry = fmt.Sprintf("before the fresh machine enrolls: kubectl drain %s --ignore-daemonsets --delete-emptydir-data; kubectl delete node %s", k.Node, k.Node)
		}
		out = append(out, fmt.Sprintf("Kubernetes: unreachable: %s; the node's kubelet certificate expires by %s, "+
			"and the hub renews it no more: the hub's refusal is what protects the cluster (to take %s out of Kubernetes, %s)",
			k.Unreachable, by, k.Node, retry))
	case k.VMStopped:
		out = append(out, fmt.Sprintf("Kubernetes: %s's VM is stopped: its kubelet cannot re-create the Node object; its certificate expires by %s", k.Node, by))
	default:
		out = append(out, fmt.Sprintf("Kubernetes: until %s (its kubelet certificate's end at the latest; the hub renews it no more) a kubelet still running on %s "+
			"could re-create its Node object; the API server refuses it after that (node fence --spec stops the VM)", by, k.Node))
	}
	return out
}

// ActOnNode has the hub at addr revoke, fence or replace the node, then,
// with act.Stop, stops its VM, and, when act.Spec runs Kubernetes and the
// node a kubelet, takes it out of Kubernetes with an admin credential
// from the hub (audited there): cordon, drain (bounded by DrainTimeout),
// delete its Node object. Only the hub's refusal is an error: Kubernetes
// not answering is reported in the outcome, never undoes or fails the
// revocation. A failed VM stop is an error returned with the outcome.
func (a Access) ActOnNode(ctx context.Context, addr string, act NodeAction) (NodeActed, error) {
	cc, err := a.Conn(addr, api.HubServerName)
	if err != nil {
		return NodeActed{}, err
	}
	defer cc.Close()
	return actOnNode(ctx, cc, act, time.Now)
}

func actOnNode(ctx context.Context, cc grpc.ClientConnInterface, act NodeAction, now func() time.Time) (NodeActed, error) {
	cl := api.NewAdminClient(cc)
	var out NodeActed
	var err error
	switch act.Verb {
	case NodeRevoke:
		out.Node, err = cl.Revoke(ctx, act.Name, act.Reason)
	case NodeFence:
		out.Node, err = cl.Fence(ctx, act.Name, act.Reason)
	case NodeReplace:
		out.Node, err = cl.Replace(ctx, act.Name)
	default:
		return out, invalid("node action %q: want revoke, fence or replace", act.Verb)
	}
	if err != nil {
		return out, err
	}
	var stopErr error
	if act.Stop != nil {
		vm, err := act.Stop(ctx, act.Name)
		if err != nil {
			stopErr = fmt.Errorf("%s at the hub, but stopping the VM failed: %w", pastTense(act.Verb), err)
		} else {
			out.VM = &vm
		}
	}
	if runsKubelet(act.Spec, act.Name) {
		out.Kubernetes = removeFromKube(ctx, cc, act, out.VM != nil && out.VM.Action != target.ActionAbsent, now())
	}
	return out, stopErr
}

func pastTense(v NodeVerb) string {
	if v == NodeFence {
		return "fenced"
	}
	return string(v) + "d"
}

// runsKubelet says whether s runs Kubernetes and node a kubelet there.
func runsKubelet(s *spec.ClusterSpec, node string) bool {
	if s == nil || !s.Workloads.Kubernetes.Enabled {
		return false
	}
	n, ok := s.NodeByName(node)
	return ok && slices.Contains(kubeplan.ComponentsFor(s, n.Role), kubeplan.Kubelet)
}

// removeFromKube cordons, drains and deletes act.Name's Node, stopping at
// the first sign that Kubernetes does not answer.
func removeFromKube(ctx context.Context, cc grpc.ClientConnInterface, act NodeAction, vmStopped bool, now time.Time) *KubeRemoval {
	life := spec.MaxKubeletClientCertificateLifetime
	if l, err := act.Spec.Workloads.Kubernetes.Lifetimes(); err == nil {
		life = l.KubeletClient
	}
	k := &KubeRemoval{Node: act.Name, VMStopped: vmStopped, verb: act.Verb, KubeletCertificateExpiresBy: now.Add(life + time.Second - 1).Truncate(time.Second)} // rounded up: a bound
	cl := act.Kube
	if cl == nil {
		creds, _, _, err := adminKubeCredentials(ctx, cc)
		if err != nil {
			k.Unreachable = "no admin credential from the hub: " + errdefs.FromGRPC(err).Error()
			return k
		}
		newKube := act.NewKube
		if newKube == nil {
			newKube = kube.New
		}
		if cl, err = newKube(creds); err != nil {
			k.Unreachable = err.Error()
			return k
		}
		k.Server = creds.Server // the hub's word, whatever the client was aimed at
	} else {
		k.Server = cl.Server()
	}
	// step runs one step; false when the API server was not reached, and
	// the steps after are not taken.
	step := func(d time.Duration, fn func(context.Context) (KubeStep, error)) bool {
		sctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		s, err := fn(sctx)
		var ae *kube.APIError
		if err != nil && !errors.As(err, &ae) && (s.Drained == nil || len(s.Drained.Evicted) == 0) {
			k.Unreachable = err.Error()
			return false
		}
		if err != nil {
			s.OK = false
		}
		k.Steps = append(k.Steps, s)
		return true
	}
	ok := step(kubeStepTimeout, func(ctx context.Context) (KubeStep, error) {
		err := cl.Cordon(ctx, act.Name)
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			return KubeStep{Step: "cordon", OK: true, Detail: "no Node object (never registered, or deleted already)"}, nil
		case err != nil:
			return KubeStep{Step: "cordon", Detail: err.Error()}, err
		}
		return KubeStep{Step: "cordon", OK: true, Detail: "unschedulable"}, nil
	}) && step(DrainTimeout, func(ctx context.Context) (KubeStep, error) {
		d, err := cl.Drain(ctx, act.Name)
		s := KubeStep{Step: "drain", OK: err == nil, Drained: &d,
			Detail: fmt.Sprintf("%d pod(s) evicted, %d skipped (DaemonSet or mirror)", len(d.Evicted), len(d.Skipped))}
		switch {
		case len(d.Refused) > 0:
			// Still deleted with the Node object below.
			s.Detail += fmt.Sprintf(", %d not evicted: %s", len(d.Refused), strings.Join(d.Refused, "; "))
		case err != nil:
			s.Detail = err.Error()
		}
		return s, err
	})
	if ok {
		step(kubeStepTimeout, func(ctx context.Context) (KubeStep, error) {
			if err := cl.DeleteNode(ctx, act.Name); err != nil {
				return KubeStep{Step: "delete", Detail: err.Error()}, err
			}
			return KubeStep{Step: "delete", OK: true, Detail: "Node object deleted; the pod garbage collector removes the pods still bound to it"}, nil
		})
	}
	return k
}
