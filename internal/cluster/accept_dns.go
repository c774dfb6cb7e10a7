package cluster

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// The cluster DNS check names.
const (
	checkCoreDNS = "coredns deployment"
	checkDNS     = "cluster dns"
)

// dnsAnswer is the probe's GET /dns/NAME (cmd/kubedos-probe): the name
// resolved by a probe pod through its resolv.conf, or why not.
type dnsAnswer struct {
	Pod         string   `json:"pod"`
	Node        string   `json:"node"`
	Name        string   `json:"name"`
	Addrs       []string `json:"addrs"`
	Error       string   `json:"error"`
	Nameservers []string `json:"nameservers"`
}

// dnsQuery is one name the gate has a probe pod resolve, and the address
// it must resolve to.
type dnsQuery struct{ name, want, what string }

// clusterDNS: CoreDNS's Deployment available, and from inside the cluster
// (a probe pod, reached through the probe's Service by the API server's
// service proxy) the API server's Service by its short name (the pod's
// search path) and the probe's Service by its full name resolve to their
// ClusterIPs. probeServed says whether the probe answered at all: without
// it there is no pod to resolve from.
func (g *gate) clusterDNS(ctx context.Context, probeServed bool) {
	cctx, cancel := g.call(ctx)
	got, err := corednsReplicas(cctx, g.kube)
	cancel()
	dep := kubeplan.CoreDNSNamespace + "/" + kubeplan.CoreDNSName
	switch {
	case err != nil:
		g.fail(checkCoreDNS, "", "deployment "+dep+": "+clipDetail(err.Error()))
	case got < kubeplan.CoreDNSReplicas:
		g.fail(checkCoreDNS, "", fmt.Sprintf("deployment %s: %d of %d replicas available", dep, got, kubeplan.CoreDNSReplicas))
	default:
		g.pass(checkCoreDNS, "", fmt.Sprintf("deployment %s: %d of %d replicas available", dep, got, kubeplan.CoreDNSReplicas))
	}
	if !probeServed {
		g.fail(checkDNS, "", "not checked: no probe pod answered to resolve from")
		return
	}
	queries, err := g.dnsQueries(ctx)
	if err != nil {
		g.fail(checkDNS, "", err.Error())
		return
	}
	for _, q := range queries {
		g.resolve(ctx, q)
	}
}

// dnsQueries: kubernetes.default to the service CIDR's first address,
// and the probe's Service to its ClusterIP, as the API server has it.
func (g *gate) dnsQueries(ctx context.Context) ([]dnsQuery, error) {
	k := spec.WithDefaults(g.cfg.Spec).Workloads.Kubernetes
	first, err := k.FirstServiceIP()
	if err != nil {
		return nil, err
	}
	var svc struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
		} `json:"spec"`
	}
	cctx, cancel := g.call(ctx)
	err = g.kube.Get(cctx, "/api/v1/namespaces/"+kubeplan.ProbeNamespace+"/services/probe", &svc)
	cancel()
	if err != nil || svc.Spec.ClusterIP == "" {
		return nil, fmt.Errorf("service %s/probe has no ClusterIP to resolve to: %v", kubeplan.ProbeNamespace, err)
	}
	return []dnsQuery{
		{name: "kubernetes.default", want: first.String(), what: "the API server's Service, through the pod's search path"},
		{name: "probe." + kubeplan.ProbeNamespace + ".svc." + k.Domain() + ".", want: svc.Spec.ClusterIP, what: "the probe's Service"},
	}, nil
}

// resolve has a probe pod resolve q.name and checks the answer.
func (g *gate) resolve(ctx context.Context, q dnsQuery) {
	path := "/api/v1/namespaces/" + kubeplan.ProbeNamespace + "/services/probe:http/proxy/dns/" + url.PathEscape(q.name)
	var a dnsAnswer
	cctx, cancel := g.call(ctx)
	err := g.kube.Get(cctx, path, &a)
	cancel()
	// What a pod says is bounded before it is reported or recorded.
	node, pod := clipName(a.Node), clipName(a.Pod)
	addrs := clipList(a.Addrs)
	via := strings.Join(clipList(a.Nameservers), ", ")
	switch {
	case err != nil:
		g.fail(checkDNS, "", fmt.Sprintf("%s (%s): asking a probe pod to resolve it: %s", q.name, q.what, clipDetail(err.Error())))
	case a.Name != q.name:
		g.fail(checkDNS, node, fmt.Sprintf("%s: pod %s answered for %q", q.name, pod, clipName(a.Name)))
	case a.Error != "":
		g.fail(checkDNS, node, fmt.Sprintf("%s (%s) does not resolve from pod %s (nameservers %s): %s",
			q.name, q.what, pod, via, clipDetail(a.Error)))
	case !slices.Contains(a.Addrs, q.want):
		g.fail(checkDNS, node, fmt.Sprintf("%s (%s) resolves to [%s] from pod %s (nameservers %s), want %s",
			q.name, q.what, strings.Join(addrs, " "), pod, via, q.want))
	default:
		g.pass(checkDNS, node, fmt.Sprintf("%s → %s from pod %s (nameservers %s)", q.name, q.want, pod, via))
	}
}

// clipDetail bounds an error text an answer carried.
func clipDetail(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}

// clipList bounds a list of short strings an answer carried.
func clipList(l []string) []string {
	const most = 8
	var out []string
	for i, s := range l {
		if i == most {
			out = append(out, fmt.Sprintf("(%d more)", len(l)-most))
			break
		}
		out = append(out, clipName(s))
	}
	return out
}
