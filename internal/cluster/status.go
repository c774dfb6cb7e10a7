package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
)

// Report is a cluster's state: its LAN (qemu), its hub, each node's VM
// and what the hub says of it (the JSON of kubedos cluster status).
type Report struct {
	Cluster string `json:"cluster"`
	// Target is proxmox for a cluster on Proxmox VE (empty: the local
	// qemu target).
	Target string `json:"target,omitempty"`
	Hub    string `json:"hub"`
	// HubOn is host, the master keeping it, or (proxmox) external: the
	// hub the VMs were deployed with (--hub), run by the operator.
	HubOn string `json:"hubOn"`
	// LAN is the local cluster's segment (nil on proxmox: the bridge is
	// the Proxmox VE node's).
	LAN      *LAN         `json:"lan,omitempty"`
	Nodes    []NodeReport `json:"nodes"`
	HubError string       `json:"hubError,omitempty"`
	// Dashboards is where the cluster's dashboards are served (an https
	// URL on the LAN; any cluster certificate of role reader or above),
	// empty when the spec runs no Prometheus.
	Dashboards string `json:"dashboards,omitempty"`
	// Console is where the hub on the master serves the web console (an
	// https URL on the LAN; operators log in with their certificate or
	// kubedos console login), empty while the hub is not on a master.
	Console string `json:"console,omitempty"`
	// KeysDir is the key directory the report was made with (to show the
	// operator a command line that works).
	KeysDir string `json:"-"`
}

// DashboardsURL is where s's dashboards are served, "" when it runs no
// Prometheus.
func DashboardsURL(s *spec.ClusterSpec) string {
	n, ok := observability.DashboardsNode(spec.WithDefaults(s))
	if !ok {
		return ""
	}
	return "https://" + net.JoinHostPort(n.Address, strconv.Itoa(api.DashboardsPort)) + "/"
}

// ConsoleURL is where the master whose hub listens at hubAddr serves the
// web console ("" for an address without a host).
func ConsoleURL(hubAddr string) string {
	host, _, err := net.SplitHostPort(hubAddr)
	if err != nil || host == "" {
		return ""
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(api.ConsolePort)) + "/"
}

// HubOnExternal is Report.HubOn on proxmox: kubedos hub serve, run by the
// operator where the VMs reach it.
const HubOnExternal = "external"

// LAN is the local cluster's segment.
type LAN struct {
	Up            bool   `json:"up"`
	Netns         string `json:"netns,omitempty"`
	Gateway       string `json:"gateway,omitempty"`
	HostInterface string `json:"hostInterface,omitempty"`
}

// NodeReport is one node: the hub's record, its VM, where to reach it.
type NodeReport struct {
	api.Node
	// VM is running or stopped; on proxmox also absent, or foreign (its
	// VMID is held by a guest kubedos did not make for this node).
	VM      string `json:"vm"`
	PID     int    `json:"pid,omitempty"`
	API     string `json:"api,omitempty"` // kubedos node … --node API --name NAME
	Console string `json:"console"`
	// VMID, Host, Agent and Addresses are proxmox's: the VM, the Proxmox
	// VE node holding it, and its QEMU guest agent (up, not running, off)
	// with the addresses the guest reports: the node's state before it
	// has a network, or without a path to it.
	VMID      int      `json:"vmid,omitempty"`
	Host      string   `json:"host,omitempty"`
	Agent     string   `json:"agent,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// Status asks the cluster's hub for its nodes (the master's hub answers
// only while its VM runs: that is a HubError, not a failure) and reads
// each VM's state.
func (c *Cluster) Status(ctx context.Context) (*Report, error) {
	if c.targetName() == spec.TargetProxmox {
		return c.statusProxmox(ctx)
	}
	var nodes []api.Node
	var hubErr error
	addr, keeper, _, err := c.FindHub()
	if err != nil {
		return nil, err
	}
	switch {
	case keeper != "":
		nodes, hubErr, _ = c.hubNodes(ctx)
	case addr != "":
		admin, done, err := c.admin()
		if err != nil {
			return nil, err
		}
		defer done()
		res, err := admin.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		nodes = res.Nodes
	}
	return c.reportWith(ctx, nodes, hubErr)
}

// hubNodes lists the nodes of the hub at c.hubAddr, waiting at most 10 s
// for it: listErr is a hub that did not answer, err a client that could
// not be made.
func (c *Cluster) hubNodes(ctx context.Context) (nodes []api.Node, listErr, err error) {
	admin, done, err := c.admin()
	if err != nil {
		return nil, nil, err
	}
	defer done()
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := admin.ListNodes(callCtx)
	if err != nil {
		return nil, err, nil
	}
	return res.Nodes, nil, nil
}

// reportWith is Report, with the hub's error (one that did not answer) in
// HubError.
func (c *Cluster) reportWith(ctx context.Context, nodes []api.Node, hubErr error) (*Report, error) {
	rep, err := c.Report(ctx, nodes)
	if rep != nil && hubErr != nil {
		rep.HubError = hubErr.Error()
	}
	return rep, err
}

// Report combines the hub's nodes with the target's view of each VM.
func (c *Cluster) Report(ctx context.Context, nodes []api.Node) (*Report, error) {
	t, err := c.target()
	if err != nil {
		return nil, err
	}
	byName := map[string]api.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	rep := &Report{Cluster: c.Spec.Metadata.Name, Hub: c.hubAddr, HubOn: "host", KeysDir: c.keysDir(), Nodes: []NodeReport{},
		Dashboards: DashboardsURL(c.Spec)}
	if c.hubKeeper != "" {
		rep.HubOn = c.hubKeeper
		rep.Console = ConsoleURL(c.hubAddr)
	}
	var vms map[string]NodeReport
	if c.targetName() == spec.TargetProxmox {
		rep.Target = spec.TargetProxmox
		if c.hubKeeper == "" {
			rep.HubOn = HubOnExternal
		}
		if vms, err = c.proxmoxVMs(ctx, t); err != nil {
			return nil, err
		}
	} else {
		rep.LAN = &LAN{}
		if seg, err := c.segment(); err == nil {
			rep.LAN = &LAN{Up: seg.Exists(), Netns: seg.Netns, Gateway: seg.Gateway.String(), HostInterface: seg.HostIf}
		}
	}
	for _, sn := range c.Spec.Topology.Nodes {
		nr, ok := vms[sn.Name]
		if !ok {
			st, err := t.Status(ctx, sn.Name)
			if err != nil {
				return nil, err
			}
			nr = NodeReport{VM: "stopped", Console: st.Console}
			switch st.State {
			case target.StateRunning:
				nr.VM, nr.PID = "running", st.PID
			case target.StateAbsent:
				if rep.Target != "" {
					nr.VM = "absent" // qemu has always said stopped
				}
			}
		}
		nr.Node = byName[sn.Name]
		nr.Name, nr.Role = sn.Name, string(sn.Role)
		if b, err := os.ReadFile(filepath.Join(c.NodeDir(sn.Name), "api.addr")); err == nil {
			nr.API = strings.TrimSpace(string(b))
		}
		rep.Nodes = append(rep.Nodes, nr)
	}
	return rep, nil
}

// Down stops every VM. On qemu also its swtpm and the hub running from
// this host, then the LAN goes; purge also deletes the state directory
// (TPMs, disks, hub state). On proxmox it stops the VMs through the API
// and destroys them (disks, TPM state) only when the spec sets
// destructive.destroyVMs; the bridge is not ours there, nor the hub unless
// this host serves it (deploy --hub-on), and purge deletes only the local
// state directory. Every step is tried; the
// errors are joined. The outcomes say what became of each node's VM.
func (c *Cluster) Down(ctx context.Context, purge bool) ([]target.Ensured, error) {
	t, err := c.target()
	if err != nil {
		return nil, err
	}
	if c.targetName() == spec.TargetProxmox {
		out, err := c.downProxmox(ctx, t, c.Spec.Topology.Nodes, c.Spec.Destructive.DestroyVMs)
		// A hub this host serves (deploy --hub-on) is ours to stop; the
		// operator's own kubedos hub serve is not (no pid file here).
		if c.hubRunner().Alive(c.HubDir()) {
			if herr := c.hubRunner().Stop(c.HubDir()); herr != nil {
				err = errors.Join(err, fmt.Errorf("hub: %w", herr))
			}
		}
		if err == nil && purge {
			err = os.RemoveAll(c.Dir)
		}
		return out, err
	}
	var errs []error
	var out []target.Ensured
	for _, n := range c.Spec.Topology.Nodes {
		e, err := stopOne(ctx, t, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		out = append(out, e)
		c.ev.emit(NodeDown{Name: e.Name, VMID: e.VMID, Action: e.Action})
	}
	if err := c.hubRunner().Stop(c.HubDir()); err != nil {
		errs = append(errs, fmt.Errorf("hub: %w", err))
	}
	// Last: the namespace goes with every tap and the veth pair.
	if err := t.RemoveNetwork(ctx); err != nil {
		errs = append(errs, fmt.Errorf("LAN: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	if purge {
		return out, os.RemoveAll(c.Dir)
	}
	return out, nil
}

// stopOne stops a node's machine and says whether there was one.
func stopOne(ctx context.Context, t target.Target, n spec.Node) (target.Ensured, error) {
	e := target.Ensured{Name: n.Name, VMID: n.VMID, Action: target.ActionStopped}
	// A state that cannot be read is no reason not to stop it.
	if st, err := t.Status(ctx, n.Name); err == nil && st.State == target.StateAbsent {
		e.Action = target.ActionAbsent
		return e, nil
	}
	return e, t.Stop(ctx, n.Name)
}

// StopNode stops one node's machine at once (a fenced node's VM; on
// proxmox through the API): the outcome is stopped, or absent when there
// is no machine.
func (c *Cluster) StopNode(ctx context.Context, name string) (target.Ensured, error) {
	n, ok := c.Spec.NodeByName(name)
	if !ok {
		return target.Ensured{}, fmt.Errorf("no node %q in %s", name, c.SpecPath)
	}
	t, err := c.target()
	if err != nil {
		return target.Ensured{}, err
	}
	if c.targetName() == spec.TargetProxmox {
		out, err := c.downProxmox(ctx, t, []spec.Node{n}, false)
		if len(out) == 0 {
			return target.Ensured{Name: name, VMID: n.VMID}, err
		}
		return out[0], err
	}
	return stopOne(ctx, t, n)
}
