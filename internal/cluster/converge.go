package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/plan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
	"google.golang.org/grpc"
)

// ConvergeConfig is everything a convergence run needs, given explicitly
// so that any front end (the CLI, cluster up, a console) can run it.
type ConvergeConfig struct {
	Spec *spec.ClusterSpec
	// HubAddr is the hub's address (host:port).
	HubAddr string
	// ClientTLS holds the operator's client certificate and the cluster CA
	// as RootCAs; the server name is set per connection (the hub's, each
	// node's name).
	ClientTLS *tls.Config
	// Builds is, per role, the image every node of it must have attested
	// on: the role's ID in the build's manifest, which is what a node
	// reports (RoleBuilds); a role not in it is left unchecked.
	Builds map[string]string
	// NodeAddrs overrides node API addresses by node name (default: the
	// node's spec address, port api.NodeAPIPort).
	NodeAddrs map[string]string
	// CheckOnly reports drift without applying anything.
	CheckOnly bool
	// Events hears of progress as steps run.
	Events func(converge.Event)
	// Engine tunes timeouts, retries and parallelism; its Events,
	// CheckOnly and AllowDestructive are set from the fields above and
	// the spec.
	Engine converge.Options
}

// ConvergeResult is a run and where the hub keeps it.
type ConvergeResult struct {
	Record *converge.Record
	// Seq is the run's number at the hub (0 when it could not be
	// recorded: RecordErr says why).
	Seq       uint64
	RecordErr error
}

// Converge runs the cluster's convergence steps once and records the run
// at the hub. The error reports steps that did not converge (wrapping
// converge.ErrStepsFailed) or a run that could not start; a run that
// converged but could not be recorded returns RecordErr only.
func Converge(ctx context.Context, cfg ConvergeConfig) (*ConvergeResult, error) {
	if cfg.Spec == nil || cfg.ClientTLS == nil || cfg.HubAddr == "" {
		return nil, errors.New("converge: a spec, a hub address and a client TLS configuration are required")
	}
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
	var kc steps.Kube
	if cfg.Spec.Workloads.Kubernetes.Enabled {
		c, err := adminKube(ctx, hubConn)
		if err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		}
		kc = c
	}
	g, err := Graph(cfg.Spec, api.NewAdminClient(hubConn), nodes, cfg.Builds, kc)
	if err != nil {
		return nil, err
	}
	opt := cfg.Engine
	opt.Events, opt.CheckOnly = cfg.Events, cfg.CheckOnly
	opt.AllowDestructive = destructiveOptIns(cfg.Spec.Destructive)
	if opt.Timeout == 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.Retries == 0 {
		opt.Retries = 2
	}
	if opt.Backoff == 0 {
		opt.Backoff = time.Second
	}
	rec, runErr := g.Converge(ctx, opt)
	if rec == nil {
		return nil, runErr
	}
	res := &ConvergeResult{Record: rec}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	got, err := api.NewRunsClient(hubConn).RecordRun(rctx, RunRecord(cfg.Spec.Metadata.Name, rec))
	if err != nil {
		res.RecordErr = fmt.Errorf("record the run at the hub %s: %w", cfg.HubAddr, err)
	} else {
		res.Seq = got.Seq
	}
	return res, runErr
}

// dialNodes connects to every spec node's API (its spec address unless
// addrs names another); the returned func closes them all.
func dialNodes(base *tls.Config, s *spec.ClusterSpec, addrs map[string]string) (map[string]steps.Node, func(), error) {
	nodes := map[string]steps.Node{}
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, cc := range conns {
			cc.Close()
		}
	}
	for _, n := range s.Topology.Nodes {
		addr := addrs[n.Name]
		if addr == "" {
			addr = net.JoinHostPort(n.Address, strconv.Itoa(api.NodeAPIPort))
		}
		cc, err := dial(base, addr, n.Name)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, cc)
		nodes[n.Name] = api.NewNodeClient(cc)
	}
	return nodes, closeAll, nil
}

// adminKube is a Kubernetes client with an admin credential the hub issues
// for this run only (≤ 1 h, audited at the hub): the addons and the gate
// need cluster-admin, and no such key is kept.
func adminKube(ctx context.Context, hubConn grpc.ClientConnInterface) (*kube.Client, error) {
	creds, _, _, err := adminKubeCredentials(ctx, hubConn)
	if err != nil {
		return nil, fmt.Errorf("an admin Kubernetes credential from the hub: %w", err)
	}
	return kube.New(creds)
}

// RoleBuilds is, per role, the ID of its image in m: what the hub records
// as the build a node of that role attested on.
func RoleBuilds(m *manifest.Manifest) map[string]string {
	out := map[string]string{}
	for role, rm := range m.Roles {
		out[role] = rm.RoleID
	}
	return out
}

// Graph builds the convergence steps of s over the hub and node clients:
// the attestation gate of every node, each node's side of every plane (the
// master's is the hub's side), then the node configuration of every role
// the spec configures, after the planes of its nodes. Step IDs are the
// plan's (internal/plan).
//
// With Kubernetes enabled and kc set, the workload steps follow: the API
// server ready (after the control plane's attestation and planes), the
// cluster objects, every kubelet node Ready, the cluster DNS available,
// the probe served; and etcd's members those of the spec (one it lacks
// waited for, one it no longer has removed with the spec's opt-in).
func Graph(s *spec.ClusterSpec, hub steps.Hub, nodes map[string]steps.Node, builds map[string]string, kc steps.Kube) (*converge.Graph, error) {
	g := converge.New()
	var errs []error
	add := func(st converge.Step) { errs = append(errs, g.Add(st)) }
	var master string
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RoleMaster {
			master = n.Name
		}
		add(steps.AttestGate(hub, n, builds[string(n.Role)]))
	}
	if master == "" {
		return nil, errors.New("converge: the spec has no master")
	}
	planesOf := map[string][]string{}
	for _, n := range s.Topology.Nodes {
		cl, ok := nodes[n.Name]
		if !ok {
			return nil, fmt.Errorf("converge: no node API client for %s", n.Name)
		}
		for _, p := range spec.Planes {
			id, deps := plan.PlaneID(p, n.Name), []string{plan.AttestID(n.Name), plan.HubPlaneID(p)}
			if n.Name == master {
				id, deps = plan.HubPlaneID(p), []string{plan.AttestID(n.Name)}
			}
			add(steps.Plane(steps.NamedNode{Name: n.Name, API: cl}, p, id, deps...))
			planesOf[n.Name] = append(planesOf[n.Name], id)
		}
	}
	for _, role := range spec.Roles {
		rc, ok := s.NodeConfig[role]
		if !ok {
			continue
		}
		var named []steps.NamedNode
		var deps []string
		for _, n := range s.Topology.Nodes {
			if n.Role == role {
				named = append(named, steps.NamedNode{Name: n.Name, API: nodes[n.Name]})
				deps = append(deps, planesOf[n.Name]...)
			}
		}
		if len(named) > 0 {
			add(steps.NodeConfig(role, rc, named, deps...))
		}
	}
	if s.Workloads.Kubernetes.Enabled && kc != nil {
		var cp, workers []string
		var kubelets []string
		var servers []steps.APIServer
		for _, n := range s.Topology.Nodes {
			comps := kubeplan.ComponentsFor(s, n.Role)
			if slices.Contains(comps, kubeplan.APIServer) {
				a, err := s.PlaneAddress(n, spec.PlaneKubernetes)
				if err != nil {
					return nil, fmt.Errorf("converge: %w", err)
				}
				servers = append(servers, steps.APIServer{Node: n.Name, Address: a.String()})
			}
			switch {
			// The API is reached through the VIP when there are load balancers.
			case slices.Contains(comps, kubeplan.APIServer) || slices.Contains(comps, kubeplan.Etcd) ||
				slices.Contains(comps, kubeplan.HAProxy):
				cp = append(cp, planesOf[n.Name]...)
			case slices.Contains(comps, kubeplan.Kubelet):
				workers = append(workers, planesOf[n.Name]...)
				kubelets = append(kubelets, n.Name)
			}
		}
		add(steps.KubeAPI(kc, servers, cp...))
		if ms, err := etcdSpecMembers(s, nodes); err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		} else if len(ms) > 0 {
			add(steps.EtcdRemoved(ms, steps.KubeAPIID))
			add(steps.EtcdJoined(ms, steps.KubeAPIID))
		}
		addons, err := kubeplan.Addons(s)
		if err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		}
		add(steps.KubeAddons(kc, addons, steps.KubeAPIID))
		add(steps.KubeNodes(kc, kubelets, append([]string{steps.KubeAPIID}, workers...)...))
		add(steps.KubeDNS(kc, steps.KubeAddonsID, steps.KubeNodesID))
		add(steps.KubeProbe(kc, steps.KubeAddonsID, steps.KubeNodesID, steps.KubeDNSID))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("converge: %w", err)
	}
	return g, g.Validate()
}

// etcdSpecMembers are the spec's etcd members with their nodes' APIs.
func etcdSpecMembers(s *spec.ClusterSpec, nodes map[string]steps.Node) ([]steps.EtcdSpecMember, error) {
	peers, err := kubeplan.EtcdPeers(s)
	if err != nil {
		return nil, err
	}
	var out []steps.EtcdSpecMember
	for _, p := range peers {
		out = append(out, steps.EtcdSpecMember{EtcdMember: p, API: nodes[p.Name]})
	}
	return out, nil
}

// destructiveOptIns names the spec's destructive opt-ins, as steps declare
// them (converge.Step.Destructive).
func destructiveOptIns(d spec.Destructive) []string {
	var out []string
	if d.RecreateVMs {
		out = append(out, "recreateVMs")
	}
	if d.WipeDisks {
		out = append(out, "wipeDisks")
	}
	if d.RemoveEtcdMembers {
		out = append(out, steps.OptInRemoveEtcdMembers)
	}
	return out
}

func dial(base *tls.Config, addr, serverName string) (*grpc.ClientConn, error) {
	conf := base.Clone()
	conf.ServerName = serverName
	if serverName == api.HubServerName {
		conf.VerifyConnection = pki.VerifyHub // a node's certificate may carry any name
	}
	cc, err := api.Dial(addr, conf)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", serverName, addr, err)
	}
	return cc, nil
}
