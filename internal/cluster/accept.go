package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
	"github.com/kubedos/kubedos/internal/wg"
)

// The outcomes of an acceptance check. Not checked is neither passed nor
// failed: the gate accepts a cluster with one only when the operator
// names it (AcceptConfig.AllowUnchecked).
const (
	CheckPassed     = "passed"
	CheckFailed     = "failed"
	CheckNotChecked = "not checked"
)

// The items the gate cannot check yet, by the name --allow-unchecked takes.
const (
	UncheckedDNS   = "dns"
	UncheckedDrill = "drill"
	UncheckedBuild = "build"
)

// Uncheckable are the names AcceptConfig.AllowUnchecked may hold.
var Uncheckable = []string{UncheckedDNS, UncheckedDrill, UncheckedBuild}

// HandshakeMaxAge is how old the newest WireGuard handshake between a node
// and the master may be on each plane: a node sends a keepalive every
// wg.Keepalive seconds and WireGuard rekeys every 2 minutes under traffic,
// so a live pair has one younger than this.
const HandshakeMaxAge = 3 * time.Minute

// ErrNotAccepted: the gate ran and a check failed or was not checked
// without the operator's leave.
var ErrNotAccepted = errdefs.New(errdefs.ErrPrecondition, "cluster not accepted")

// AcceptKube is what the gate needs of the API server (internal/kube's
// client).
type AcceptKube interface {
	Ready(ctx context.Context) error
	Get(ctx context.Context, path string, out any) error
	Nodes(ctx context.Context) ([]kube.Node, error)
	Pods(ctx context.Context, namespace string) ([]kube.Pod, error)
}

// AcceptConfig is everything the acceptance gate needs.
type AcceptConfig struct {
	Spec      *spec.ClusterSpec
	HubAddr   string
	ClientTLS *tls.Config
	// Builds is RoleBuilds of the build every node must run; nil leaves
	// the builds unchecked (item "build").
	Builds map[string]string
	// NodeAddrs overrides node API addresses by node name.
	NodeAddrs map[string]string
	// Kube is the API server's client; nil: one with an admin credential
	// the hub issues for this run (≤ 1 h, audited).
	Kube AcceptKube
	// AllowUnchecked names the unchecked items (Uncheckable) the cluster
	// may be accepted without.
	AllowUnchecked []string
	// ProbeTries bounds the requests through the probe's Service (default
	// 10 per replica); every replica must answer within them.
	ProbeTries int
	// CallTimeout bounds each call the gate makes (default 15 s).
	CallTimeout time.Duration
	// Now is the clock handshakes are aged by (time.Now if nil).
	Now func() time.Time
}

// AcceptResult is the gate's report.
type AcceptResult struct {
	Cluster  string                     `json:"cluster"`
	Accepted bool                       `json:"accepted"`
	Checks   []manifest.AcceptanceCheck `json:"checks"`
	// Allowed are the unchecked items accepted with --allow-unchecked.
	Allowed []string `json:"allowedUnchecked,omitempty"`
	// Nodes are the spec's nodes as the hub records them.
	Nodes    []manifest.AcceptanceNode `json:"nodes"`
	WallTime time.Duration             `json:"wallTimeNS"`
	Started  time.Time                 `json:"started"`
}

// Failed is the checks that failed and those not checked without leave.
func (r *AcceptResult) Failed() []manifest.AcceptanceCheck {
	var out []manifest.AcceptanceCheck
	for _, c := range r.Checks {
		if c.Outcome == CheckFailed || c.Outcome == CheckNotChecked && !slices.Contains(r.Allowed, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// Accept runs every acceptance check of the cluster (seed 004 §17) and
// reports each: the nodes attested on the build, every plane joined with
// a live handshake between each node and the master, and with Kubernetes
// the API server, every kubelet node, kube-system and the probe served
// through its Service. What cannot be checked yet (cluster DNS, the
// replacement drill) is reported as not checked. The error wraps
// ErrNotAccepted when a check failed; the result is there either way.
func Accept(ctx context.Context, cfg AcceptConfig) (*AcceptResult, error) {
	if cfg.Spec == nil || cfg.ClientTLS == nil || cfg.HubAddr == "" {
		return nil, errors.New("accept: a spec, a hub address and a client TLS configuration are required")
	}
	for _, a := range cfg.AllowUnchecked {
		if !slices.Contains(Uncheckable, a) {
			return nil, fmt.Errorf("%w: --allow-unchecked %q: the items are %s", errdefs.ErrInvalid, a, strings.Join(Uncheckable, ", "))
		}
	}
	start := time.Now()
	hubConn, err := dial(cfg.ClientTLS, cfg.HubAddr, api.HubServerName)
	if err != nil {
		return nil, err
	}
	defer hubConn.Close()
	nodes, closeNodes, err := dialNodes(cfg.ClientTLS, cfg.Spec, cfg.NodeAddrs)
	if err != nil {
		return nil, err
	}
	defer closeNodes()
	kc := cfg.Kube
	var kubeErr error
	if kc == nil && cfg.Spec.Workloads.Kubernetes.Enabled {
		cctx, cancel := context.WithTimeout(ctx, cfg.callTimeout())
		c, err := adminKube(cctx, hubConn)
		cancel()
		if err != nil {
			kubeErr = err
		} else {
			kc = c
		}
	}
	g := gate{cfg: cfg, hub: api.NewAdminClient(hubConn), nodes: nodes, kube: kc, kubeErr: kubeErr}
	res := g.run(ctx)
	res.Started, res.WallTime = start, time.Since(start)
	if f := res.Failed(); len(f) > 0 {
		return res, fmt.Errorf("%w: %d check(s) did not pass", ErrNotAccepted, len(f))
	}
	return res, nil
}

func (c AcceptConfig) callTimeout() time.Duration {
	if c.CallTimeout > 0 {
		return c.CallTimeout
	}
	return 15 * time.Second
}

// gate runs the checks over clients; tests give it fakes.
type gate struct {
	cfg     AcceptConfig
	hub     steps.Hub
	nodes   map[string]steps.Node
	kube    AcceptKube
	kubeErr error
	res     AcceptResult
}

// maxDetail bounds one check's detail: it may quote the API server, a
// node or a pod, and the record that carries it has a bound of its own.
const maxDetail = 1024

func (g *gate) add(name, node, outcome, detail string) {
	if len(detail) > maxDetail {
		detail = strings.ToValidUTF8(detail[:maxDetail], "") + "…"
	}
	g.res.Checks = append(g.res.Checks, manifest.AcceptanceCheck{Name: name, Node: node, Outcome: outcome, Detail: detail})
}

func (g *gate) pass(name, node, detail string) { g.add(name, node, CheckPassed, detail) }
func (g *gate) fail(name, node, detail string) { g.add(name, node, CheckFailed, detail) }

// call bounds one call of the gate.
func (g *gate) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.cfg.callTimeout())
}

func (g *gate) now() time.Time {
	if g.cfg.Now != nil {
		return g.cfg.Now()
	}
	return time.Now()
}

func (g *gate) run(ctx context.Context) *AcceptResult {
	s := g.cfg.Spec
	g.res = AcceptResult{Cluster: s.Metadata.Name, Checks: []manifest.AcceptanceCheck{}, Nodes: []manifest.AcceptanceNode{}}
	g.attested(ctx)
	g.planes(ctx)
	if s.Workloads.Kubernetes.Enabled {
		g.kubernetes(ctx)
		g.add(UncheckedDNS, "", CheckNotChecked, "no cluster DNS yet (CoreDNS is not built)")
	}
	g.add(UncheckedDrill, "", CheckNotChecked, "the replacement drill (fence, revoke, destroy, recreate a worker) is not automated yet")
	for _, c := range g.res.Checks {
		if c.Outcome == CheckNotChecked && slices.Contains(g.cfg.AllowUnchecked, c.Name) {
			g.res.Allowed = append(g.res.Allowed, c.Name)
		}
	}
	g.res.Accepted = len(g.res.Failed()) == 0
	return &g.res
}

// attested: every spec node enrolled at the hub, for its spec role, on the
// image the build names for its role.
func (g *gate) attested(ctx context.Context) {
	for _, n := range g.cfg.Spec.Topology.Nodes {
		cctx, cancel := g.call(ctx)
		got, err := g.hub.GetNode(cctx, n.Name)
		cancel()
		if err != nil {
			g.fail("attested", n.Name, "the hub: "+err.Error())
			continue
		}
		g.res.Nodes = append(g.res.Nodes, manifest.AcceptanceNode{Name: got.Name, Role: got.Role, EKHash: got.EKHash, BuildID: got.BuildID})
		var why []string
		if got.State != api.NodeEnrolled {
			s := fmt.Sprintf("%s, not enrolled", got.State)
			if r := got.Reason; r != nil {
				s += fmt.Sprintf(" (%s: %s)", r.Check, r.Detail)
			}
			why = append(why, s)
		}
		if got.Role != string(n.Role) {
			why = append(why, fmt.Sprintf("enrolled as %s, the spec says %s", got.Role, n.Role))
		}
		want, checked := g.cfg.Builds[string(n.Role)]
		if checked && got.BuildID != want {
			why = append(why, fmt.Sprintf("runs image %s, the build's %s image is %s", got.BuildID, n.Role, want))
		}
		if got.Retired != "" {
			why = append(why, "runs a retired build: "+got.Retired)
		}
		if len(why) > 0 {
			g.fail("attested", n.Name, strings.Join(why, "; "))
			continue
		}
		detail := "enrolled as " + got.Role
		if got.EKHash != "" {
			detail += ", EK " + got.EKHash
		}
		if checked {
			detail += ", on the build's image " + got.BuildID
		}
		g.pass("attested", n.Name, detail)
	}
	if g.cfg.Builds == nil {
		g.add(UncheckedBuild, "", CheckNotChecked, "no build given (--build): the images the nodes run were not checked against one")
	}
}

// planes: every plane joined and up on every node, with a handshake
// younger than HandshakeMaxAge between each node and the master, seen
// from both sides (the node's peer the master, the master's peer the
// node).
func (g *gate) planes(ctx context.Context) {
	s := g.cfg.Spec
	var master string
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RoleMaster {
			master = n.Name
		}
	}
	reports := map[string]*api.Planes{}
	errs := map[string]error{}
	for _, n := range s.Topology.Nodes {
		cctx, cancel := g.call(ctx)
		reports[n.Name], errs[n.Name] = g.nodes[n.Name].Planes(cctx)
		cancel()
	}
	now := g.now()
	for _, p := range spec.Planes {
		if _, ok := s.Networking.Planes[p]; !ok {
			continue
		}
		name := "plane " + string(p)
		for _, n := range s.Topology.Nodes {
			if err := errs[n.Name]; err != nil {
				g.fail(name, n.Name, "node API: planes: "+err.Error())
				continue
			}
			ps := reports[n.Name]
			if why := steps.PlaneProblem(n.Name, p, ps, now); why != "" {
				g.fail(name, n.Name, why)
				continue
			}
			var peers []string
			if n.Name == master {
				for _, o := range s.Topology.Nodes {
					if o.Name != master {
						peers = append(peers, o.Name)
					}
				}
			} else if master != "" {
				peers = []string{master}
			}
			var why, ok []string
			for _, peer := range peers {
				age, problem := handshake(ps, p, peer, now)
				if problem != "" {
					why = append(why, problem)
					continue
				}
				ok = append(ok, fmt.Sprintf("%s %s ago", peer, age.Round(time.Second)))
			}
			if len(why) > 0 {
				g.fail(name, n.Name, strings.Join(why, "; "))
				continue
			}
			g.pass(name, n.Name, "up; handshakes: "+strings.Join(ok, ", "))
		}
	}
}

// handshake finds peer on plane p of a node's report and ages its newest
// handshake.
func handshake(ps *api.Planes, p spec.Plane, peer string, now time.Time) (time.Duration, string) {
	i := slices.IndexFunc(ps.Interfaces, func(s wg.Status) bool { return s.Plane == string(p) })
	if i < 0 {
		return 0, "no " + string(p) + " interface"
	}
	st := ps.Interfaces[i]
	j := slices.IndexFunc(st.Peers, func(x wg.PeerStatus) bool { return x.Name == peer })
	switch {
	case j < 0:
		return 0, fmt.Sprintf("%s has no peer %s", st.Interface, peer)
	case st.Peers[j].LatestHandshake.IsZero():
		return 0, fmt.Sprintf("no handshake with %s on %s", peer, st.Interface)
	}
	age := now.Sub(st.Peers[j].LatestHandshake)
	if age > HandshakeMaxAge {
		return age, fmt.Sprintf("last handshake with %s on %s was %s ago (more than %v)", peer, st.Interface, age.Round(time.Second), HandshakeMaxAge)
	}
	return age, ""
}

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

	if !g.probeAvailable(ctx) {
		g.fail(checkProbeServed, "", "not checked: the probe's replicas are not available")
		return
	}
	g.probeServed(ctx, apiNode)
}

func (g *gate) probeAvailable(ctx context.Context) bool {
	path := "/apis/apps/v1/namespaces/" + kubeplan.ProbeNamespace + "/deployments/probe"
	var d struct {
		Status struct {
			AvailableReplicas int `json:"availableReplicas"`
		} `json:"status"`
	}
	cctx, cancel := g.call(ctx)
	err := g.kube.Get(cctx, path, &d)
	cancel()
	switch got := d.Status.AvailableReplicas; {
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
// proxy until every running probe pod has answered, within ProbeTries.
func (g *gate) probeServed(ctx context.Context, apiNode string) {
	cctx, cancel := g.call(ctx)
	pods, err := g.kube.Pods(cctx, kubeplan.ProbeNamespace)
	cancel()
	if err != nil {
		g.fail(checkProbeServed, "", "listing the probe's pods: "+err.Error())
		return
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
		return
	}
	g.pass(checkProbeServed, apiNode, "served through Service probe from the API server: "+strings.Join(got, ", "))
}

// clipName bounds a name an API answer carried before it is reported.
func clipName(s string) string {
	if len(s) > 253 {
		return s[:253] + "…"
	}
	return s
}
