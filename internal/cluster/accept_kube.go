package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// The Kubernetes check names.
const (
	checkKubeAPI     = "kubernetes api"
	checkKubelet     = "kubelet ready"
	checkKubeSystem  = "kube-system pods"
	checkProbe       = "probe deployment"
	checkProbeServed = "probe service"
)

// kubernetes: the API server ready, every kubelet node Ready, every pod
// of kube-system Running, the probe's Deployment available and every
// replica answering through its Service by the API server's service proxy
// (from the control-plane node to pods on the workers).
func (g *gate) kubernetes(ctx context.Context) {
	s := g.cfg.Spec
	var apiNodes, kubelets []string
	for _, n := range s.Topology.Nodes {
		comps := kubeplan.ComponentsFor(s, n.Role)
		if slices.Contains(comps, kubeplan.APIServer) {
			apiNodes = append(apiNodes, n.Name)
		}
		if slices.Contains(comps, kubeplan.Kubelet) {
			kubelets = append(kubelets, n.Name)
		}
	}
	apiNode := strings.Join(apiNodes, ",")
	skip := func(why string) {
		for _, n := range kubelets {
			g.fail(checkKubelet, n, why)
		}
		g.fail(checkKubeSystem, "", why)
		g.fail(checkProbe, "", why)
		g.fail(checkProbeServed, "", why)
		g.fail(checkCoreDNS, "", why)
		g.fail(checkDNS, "", why)
	}
	if g.kube == nil {
		why := "no Kubernetes client"
		if g.kubeErr != nil {
			why = g.kubeErr.Error()
		}
		g.fail(checkKubeAPI, apiNode, why)
		skip("not checked: no API server to ask")
		return
	}
	cctx, cancel := g.call(ctx)
	err := g.kube.Ready(cctx)
	cancel()
	if err != nil {
		g.fail(checkKubeAPI, apiNode, "kube-apiserver is not ready: "+err.Error())
		skip("not checked: the API server is not ready")
		return
	}
	g.pass(checkKubeAPI, apiNode, "/readyz ok")

	cctx, cancel = g.call(ctx)
	knodes, err := g.kube.Nodes(cctx)
	cancel()
	for _, name := range kubelets {
		i := slices.IndexFunc(knodes, func(n kube.Node) bool { return n.Name == name })
		switch {
		case err != nil:
			g.fail(checkKubelet, name, "listing nodes: "+err.Error())
		case i < 0:
			g.fail(checkKubelet, name, "not registered with the API server")
		case !knodes[i].Ready:
			g.fail(checkKubelet, name, "registered, not Ready")
		default:
			g.pass(checkKubelet, name, "Ready, kubelet "+knodes[i].KubeletVersion)
		}
	}

	cctx, cancel = g.call(ctx)
	pods, err := g.kube.Pods(cctx, "kube-system")
	cancel()
	switch {
	case err != nil:
		g.fail(checkKubeSystem, "", "listing kube-system pods: "+err.Error())
	default:
		bad := 0
		for _, p := range pods {
			if p.Phase != "Running" {
				bad++
				g.fail(checkKubeSystem, p.Node, fmt.Sprintf("pod %s is %s", p.Name, p.Phase))
			}
		}
		if bad == 0 {
			g.pass(checkKubeSystem, "", fmt.Sprintf("%d pod(s), all Running", len(pods)))
		}
	}

	served := false
	if g.probeAvailable(ctx) {
		served = g.probeServed(ctx, apiNode)
	} else {
		g.fail(checkProbeServed, "", "not checked: the probe's replicas are not available")
	}
	g.clusterDNS(ctx, served)
}

// getter is what reading a Deployment needs of the API server.
type getter interface {
	Get(ctx context.Context, path string, out any) error
}

// probeReplicas is how many replicas of the probe's Deployment are
// available.
func probeReplicas(ctx context.Context, k getter) (int, error) {
	return deploymentReplicas(ctx, k, kubeplan.ProbeNamespace, "probe")
}

// corednsReplicas is how many replicas of CoreDNS's Deployment are
// available.
func corednsReplicas(ctx context.Context, k getter) (int, error) {
	return deploymentReplicas(ctx, k, kubeplan.CoreDNSNamespace, kubeplan.CoreDNSName)
}

func deploymentReplicas(ctx context.Context, k getter, namespace, name string) (int, error) {
	var d struct {
		Status struct {
			AvailableReplicas int `json:"availableReplicas"`
		} `json:"status"`
	}
	err := k.Get(ctx, "/apis/apps/v1/namespaces/"+namespace+"/deployments/"+name, &d)
	return d.Status.AvailableReplicas, err
}

func (g *gate) probeAvailable(ctx context.Context) bool {
	cctx, cancel := g.call(ctx)
	got, err := probeReplicas(cctx, g.kube)
	cancel()
	switch {
	case err != nil:
		g.fail(checkProbe, "", "deployment "+kubeplan.ProbeNamespace+"/probe: "+err.Error())
	case got < kubeplan.ProbeReplicas:
		g.fail(checkProbe, "", fmt.Sprintf("%d of %d replicas available", got, kubeplan.ProbeReplicas))
	default:
		g.pass(checkProbe, "", fmt.Sprintf("%d of %d replicas available", got, kubeplan.ProbeReplicas))
		return true
	}
	return false
}

// probeAnswer is the probe's GET / (cmd/kubedos-probe).
type probeAnswer struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	Time string `json:"time"`
}

// probeServed asks the probe's Service through the API server's service
// proxy until every running probe pod has answered, within ProbeTries. It
// tells whether any answered (a pod to resolve names from).
func (g *gate) probeServed(ctx context.Context, apiNode string) bool {
	cctx, cancel := g.call(ctx)
	pods, err := g.kube.Pods(cctx, kubeplan.ProbeNamespace)
	cancel()
	if err != nil {
		g.fail(checkProbeServed, "", "listing the probe's pods: "+err.Error())
		return false
	}
	want := map[string]string{} // running probe pod → its node
	for _, p := range pods {
		if p.Phase == "Running" && p.Ready {
			want[p.Name] = p.Node
		}
	}
	tries := g.cfg.ProbeTries
	if tries <= 0 {
		tries = 10 * max(len(want), kubeplan.ProbeReplicas)
	}
	path := "/api/v1/namespaces/" + kubeplan.ProbeNamespace + "/services/probe:http/proxy/"
	answered := map[string]string{}
	var lastErr error
	for i := 0; i < tries && len(answered) < len(want); i++ {
		var a probeAnswer
		cctx, cancel := g.call(ctx)
		err := g.kube.Get(cctx, path, &a)
		cancel()
		switch {
		case err != nil:
			lastErr = err
		case want[a.Pod] == "":
			lastErr = fmt.Errorf("answered by %q, not a running probe pod", clipName(a.Pod))
		default:
			answered[a.Pod] = clipName(a.Node)
		}
	}
	var got []string
	for p, n := range answered {
		got = append(got, p+" on "+n)
	}
	sort.Strings(got)
	if len(want) < kubeplan.ProbeReplicas || len(answered) < len(want) {
		var silent, missing []string
		for p := range want {
			if answered[p] == "" {
				silent = append(silent, p)
			}
		}
		sort.Strings(silent)
		for _, p := range silent {
			missing = append(missing, p+" on "+want[p])
		}
		detail := fmt.Sprintf("%d of %d running replicas answered through the Service in %d tries", len(answered), len(want), tries)
		if len(want) < kubeplan.ProbeReplicas {
			detail = fmt.Sprintf("%d running probe pod(s), want %d", len(want), kubeplan.ProbeReplicas)
		}
		if len(missing) > 0 {
			detail += "; silent: " + strings.Join(missing, ", ")
		}
		if lastErr != nil {
			detail += "; last error: " + lastErr.Error()
		}
		node := ""
		if len(silent) > 0 {
			node = want[silent[0]]
		}
		g.fail(checkProbeServed, node, detail)
		return len(answered) > 0
	}
	g.pass(checkProbeServed, apiNode, "served through Service probe from the API server: "+strings.Join(got, ", "))
	return true
}
