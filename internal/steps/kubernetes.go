package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/plan"
)

// Kube is what the Kubernetes steps need of the API server (internal/kube's
// client, with an admin credential from the hub).
type Kube interface {
	Ready(ctx context.Context) error
	Get(ctx context.Context, path string, out any) error
	Apply(ctx context.Context, obj []byte) error
	Nodes(ctx context.Context) ([]kube.Node, error)
}

// Kubernetes step IDs under the plan's workload step, which is the last
// of them (the probe served).
const (
	KubeAPIID    = plan.WorkloadKubernetes + "/api"
	KubeAddonsID = plan.WorkloadKubernetes + "/addons"
	KubeNodesID  = plan.WorkloadKubernetes + "/nodes"
	KubeDNSID    = plan.WorkloadKubernetes + "/dns"
)

// APIServer is one API server of the cluster: its node and the
// kubernetes-plane address it advertises.
type APIServer struct{ Node, Address string }

// KubeAPI is the gate on the API server answering /readyz (etcd reached,
// every post-start hook done) and, where there are several, on every one
// of them serving: each among the endpoints of the default/kubernetes
// Service (the lease reconciler lists an API server only while it runs
// and reaches etcd). An HA cluster with one API server of three is not
// converged, and the later ones start one at a time. It changes nothing.
func KubeAPI(k Kube, servers []APIServer, deps ...string) converge.Step {
	return converge.Step{
		ID: KubeAPIID, Phase: plan.PhaseWorkload, Deps: deps, Reads: []string{"kubernetes:/readyz", "kubernetes:endpoints/default/kubernetes"},
		Check: func(ctx context.Context) (converge.State, error) {
			if err := k.Ready(ctx); err != nil {
				return converge.State{Diff: "kube-apiserver is not ready: " + err.Error()}, nil
			}
			if len(servers) < 2 {
				return converge.State{Converged: true}, nil
			}
			eps, err := APIEndpoints(ctx, k)
			if err != nil {
				return converge.State{}, err
			}
			var missing []string
			for _, a := range servers {
				if !slices.Contains(eps, a.Address) {
					missing = append(missing, a.Node+" ("+a.Address+")")
				}
			}
			if len(missing) > 0 {
				return converge.State{Diff: "API servers not serving yet: " + strings.Join(missing, ", ")}, nil
			}
			return converge.State{Converged: true}, nil
		},
	}
}

// Getter reads one API object.
type Getter interface {
	Get(ctx context.Context, path string, out any) error
}

// APIEndpoints is the addresses of the default/kubernetes Service's
// endpoints: the API servers that run and renewed their lease.
func APIEndpoints(ctx context.Context, k Getter) ([]string, error) {
	var ep struct {
		Subsets []struct {
			Addresses []struct {
				IP string `json:"ip"`
			} `json:"addresses"`
		} `json:"subsets"`
	}
	if err := k.Get(ctx, "/api/v1/namespaces/default/endpoints/kubernetes", &ep); err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			ips = append(ips, a.IP)
		}
	}
	return ips, nil
}

// KubeAddons keeps the cluster objects every kubedos cluster has
// (kubeplan.Addons): Check finds each by its path, Apply applies them all
// (server-side apply, so applying again changes nothing). An object
// changed in place by someone else is not seen as drift yet: only a
// missing one is.
func KubeAddons(k Kube, objs []kubeplan.Object, deps ...string) converge.Step {
	var names []string
	for _, o := range objs {
		names = append(names, "kubernetes:"+objName(o))
	}
	return converge.Step{
		ID: KubeAddonsID, Phase: plan.PhaseWorkload, Deps: deps, Reads: names, Writes: names,
		Check: func(ctx context.Context) (converge.State, error) {
			var missing []string
			for _, o := range objs {
				path, err := kube.ObjectPath(o.Body)
				if err != nil {
					return converge.State{}, fmt.Errorf("%s: %w", objName(o), err)
				}
				var got struct{}
				if err := k.Get(ctx, path, &got); err != nil {
					if errors.Is(err, errdefs.ErrNotFound) {
						missing = append(missing, objName(o))
						continue
					}
					return converge.State{}, fmt.Errorf("%s: %w", objName(o), err)
				}
			}
			if len(missing) > 0 {
				return converge.State{Diff: "missing: " + strings.Join(missing, ", ")}, nil
			}
			return converge.State{Converged: true}, nil
		},
		Apply: func(ctx context.Context) error {
			for _, o := range objs {
				if err := k.Apply(ctx, o.Body); err != nil {
					return fmt.Errorf("%s: %w", objName(o), err)
				}
			}
			return nil
		},
	}
}

func objName(o kubeplan.Object) string {
	if o.Namespace != "" {
		return o.Kind + " " + o.Namespace + "/" + o.Name
	}
	return o.Kind + " " + o.Name
}

// KubeNodes is the gate on every kubelet node of the spec being registered
// and Ready, under its spec name (its kubelet certificate's).
func KubeNodes(k Kube, names []string, deps ...string) converge.Step {
	return converge.Step{
		ID: KubeNodesID, Phase: plan.PhaseWorkload, Deps: deps, Reads: []string{"kubernetes:nodes"},
		Check: func(ctx context.Context) (converge.State, error) {
			nodes, err := k.Nodes(ctx)
			if err != nil {
				return converge.State{}, err
			}
			var why []string
			for _, name := range names {
				i := slices.IndexFunc(nodes, func(n kube.Node) bool { return n.Name == name })
				switch {
				case i < 0:
					why = append(why, name+" is not registered")
				case !nodes[i].Ready:
					why = append(why, name+" is not Ready")
				}
			}
			if len(why) > 0 {
				return converge.State{Diff: strings.Join(why, "\n")}, nil
			}
			return converge.State{Converged: true}, nil
		},
	}
}

// KubeDNS is the gate on the cluster DNS: CoreDNS's Deployment has every
// replica available (ready: its kubernetes plugin has synced with the API
// server).
func KubeDNS(k Kube, deps ...string) converge.Step {
	path := "/apis/apps/v1/namespaces/" + kubeplan.CoreDNSNamespace + "/deployments/" + kubeplan.CoreDNSName
	return converge.Step{
		ID: KubeDNSID, Phase: plan.PhaseWorkload, Deps: deps, Reads: []string{"kubernetes:" + path},
		Check: deploymentAvailable(k, path, "coredns", kubeplan.CoreDNSReplicas),
	}
}

// KubeProbe is the plan's Kubernetes workload step: the acceptance probe's
// Deployment has every replica available.
func KubeProbe(k Kube, deps ...string) converge.Step {
	path := "/apis/apps/v1/namespaces/" + kubeplan.ProbeNamespace + "/deployments/probe"
	return converge.Step{
		ID: plan.WorkloadKubernetes, Phase: plan.PhaseWorkload, Deps: deps, Reads: []string{"kubernetes:" + path},
		Check: deploymentAvailable(k, path, "probe", kubeplan.ProbeReplicas),
	}
}

func deploymentAvailable(k Kube, path, name string, want int) func(ctx context.Context) (converge.State, error) {
	return func(ctx context.Context) (converge.State, error) {
		var d struct {
			Status struct {
				AvailableReplicas int `json:"availableReplicas"`
			} `json:"status"`
		}
		if err := k.Get(ctx, path, &d); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return converge.State{}, err
		}
		if got := d.Status.AvailableReplicas; got < want {
			return converge.State{Diff: fmt.Sprintf("%s: %d of %d replicas available", name, got, want)}, nil
		}
		return converge.State{Converged: true}, nil
	}
}
