package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
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

// The items the gate may leave unchecked, by the name --allow-unchecked
// takes. (Cluster DNS is checked since CoreDNS is built: "dns" is no
// longer one.)
const (
	UncheckedDrill = "drill"
	UncheckedBuild = "build"
)

// Uncheckable are the names AcceptConfig.AllowUnchecked may hold.
var Uncheckable = []string{UncheckedDrill, UncheckedBuild}

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
	// DrillNode is the worker the replacement drill replaces, before
	// every other check (so they check the cluster it left); empty: the
	// drill is not checked.
	DrillNode string
	// Drill runs it (Cluster.Drill), with the gate's own API server
	// client when it holds one (nil: the drill asks for a credential).
	Drill func(ctx context.Context, node string, kc *kube.Client) (*DrillReport, error)
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
	// Drill is the replacement drill's report, when it ran.
	Drill *DrillReport `json:"drill,omitempty"`
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
// reports each: the replacement drill when a node is named for it (first,
// so the other checks see the cluster it left), the nodes attested on the
// build, every plane joined with a live handshake between each node and
// the master, and with Kubernetes the API server, every kubelet node,
// kube-system, the probe served through its Service and cluster DNS
// (CoreDNS available, Service names resolved from a probe pod). What is not
// checked (the drill without a node; the builds without one) is reported
// as not checked. The error wraps ErrNotAccepted when a check failed; the result
// is there either way.
func Accept(ctx context.Context, cfg AcceptConfig) (*AcceptResult, error) {
	if cfg.Spec == nil || cfg.ClientTLS == nil || cfg.HubAddr == "" {
		return nil, errors.New("accept: a spec, a hub address and a client TLS configuration are required")
	}
	for _, a := range cfg.AllowUnchecked {
		if !slices.Contains(Uncheckable, a) {
			return nil, fmt.Errorf("%w: --allow-unchecked %q: the items are %s", errdefs.ErrInvalid, a, strings.Join(Uncheckable, ", "))
		}
	}
	if cfg.DrillNode != "" {
		if err := DrillNodeOK(cfg.Spec, cfg.DrillNode); err != nil {
			return nil, err
		}
		if cfg.Drill == nil {
			return nil, errors.New("accept: a drill node without a drill to run")
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
	g.drill(ctx)
	g.attested(ctx)
	g.planes(ctx)
	if s.Workloads.Kubernetes.Enabled {
		g.kubernetes(ctx)
	}
	for _, c := range g.res.Checks {
		if c.Outcome == CheckNotChecked && slices.Contains(g.cfg.AllowUnchecked, c.Name) {
			g.res.Allowed = append(g.res.Allowed, c.Name)
		}
	}
	g.res.Accepted = len(g.res.Failed()) == 0
	return &g.res
}

// drill runs the replacement drill first: the checks after it then see
// the replaced node attested, on the planes and Ready.
func (g *gate) drill(ctx context.Context) {
	if g.cfg.DrillNode == "" {
		g.add(UncheckedDrill, "", CheckNotChecked, "the replacement drill (fence, replace, destroy, recreate a worker) was not asked for (--drill NODE)")
		return
	}
	kc, _ := g.kube.(*kube.Client) // the real gate's; a test's fake is not
	r, err := g.cfg.Drill(ctx, g.cfg.DrillNode, kc)
	g.res.Drill = r
	switch {
	case r == nil && err != nil:
		g.fail(UncheckedDrill, g.cfg.DrillNode, err.Error())
	case err != nil:
		g.fail(UncheckedDrill, g.cfg.DrillNode, r.Summary())
	default:
		g.pass(UncheckedDrill, g.cfg.DrillNode, r.Summary())
	}
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

// clipName bounds a name an API answer carried before it is reported.
func clipName(s string) string {
	if len(s) > 253 {
		return s[:253] + "…"
	}
	return s
}
