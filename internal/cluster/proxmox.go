package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// defaultImportStorage is Proxmox VE's stock file-based storage.
const defaultImportStorage = "local"

// Deployed is each node's outcome of the last proxmox deploy.
func (c *Cluster) Deployed() []target.Ensured { return c.deployed }

// proxmoxTarget is the spec's Proxmox VE node as a target, its TPMs made
// here; work holds the variable store and each new TPM until uploaded
// (empty: a target that only reads, stops and destroys VMs).
func (c *Cluster) proxmoxTarget(work string) (*proxmox.Target, error) {
	p := c.Spec.Targets.Proxmox
	if p == nil {
		return nil, fmt.Errorf("%s: targets.proxmox is not configured", c.SpecPath)
	}
	if p.TokenFile == "" {
		return nil, fmt.Errorf("%s: targets.proxmox.tokenFile is required: the file holding the API token", c.SpecPath)
	}
	token, err := proxmox.ReadToken(p.TokenFile)
	if err != nil {
		return nil, err
	}
	var pin []byte
	if p.Fingerprint != "" {
		if pin, err = spec.ParseFingerprint(p.Fingerprint); err != nil {
			return nil, fmt.Errorf("targets.proxmox.fingerprint: %w", err)
		}
	}
	client, err := proxmox.New(p.APIURL, p.Node, token, pin)
	if err != nil {
		return nil, err
	}
	t := &proxmox.Target{C: client, Cluster: c.Spec.Metadata.Name, Storage: p.Storage, Bridge: p.Bridge,
		ImportStorage: p.ImportStorage, Recreate: c.Spec.Destructive.RecreateVMs, WorkDir: work, Step: c.ev.msg,
		MakeTPM: func(ctx context.Context, path string) (string, error) {
			ek, err := qemu.MakeTPMStateFile(ctx, path)
			if err != nil {
				return "", err
			}
			return attest.EKHash(ek), nil
		}}
	if c.Manifest != nil {
		t.Machine = c.Manifest.Machines["proxmox"]
	}
	if t.ImportStorage == "" {
		t.ImportStorage = defaultImportStorage
	}
	return t, nil
}

// deployProxmox makes the spec's VMs on its Proxmox VE node, their EKs
// registered with the cluster's hub; Deployed has the outcomes. The hub is
// the master once an earlier deploy handed it over; else, with HubOn set,
// this host serves it on ProxmoxHub (an address of this host the VMs
// reach) and, with HubOnMaster, hands it to the master once it enrolled,
// as on qemu; with HubOn empty it is the operator's own kubedos hub serve
// at ProxmoxHub.
func (c *Cluster) deployProxmox(ctx context.Context) error {
	handed, err := c.readHandoff()
	if err != nil {
		return err
	}
	if handed == nil {
		if c.ProxmoxHub == "" {
			return invalid("--hub is required for the proxmox target: the address (host:port) at which the VMs reach a hub serving this cluster (kubedos hub serve, or this host with --hub-on)")
		}
		if _, err := netip.ParseAddrPort(c.ProxmoxHub); err != nil {
			return invalid("--hub %q: want an IP address and port the VMs reach, like 10.0.0.5:7443", c.ProxmoxHub)
		}
	}
	switch c.HubOn {
	case "", HubOnHost:
	case HubOnMaster:
		if c.Timeout <= 0 && handed == nil {
			return invalid("--hub-on master waits for the master to enroll before handing it the hub: give --timeout")
		}
	default:
		return invalid("--hub-on %q: want %s or %s", c.HubOn, HubOnMaster, HubOnHost)
	}
	work := filepath.Join(c.Dir, "proxmox")
	var t target.Target = c.Target
	if t == nil {
		pt, err := c.proxmoxTarget(work)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o700); err != nil {
			return err
		}
		vars, err := EnrolledVars(c.Keys)
		if err != nil {
			return err
		}
		pt.Vars = filepath.Join(work, "ovmf-vars.fd")
		if err := durable.WriteFile(pt.Vars, vars, 0o644); err != nil {
			return err
		}
		t = pt
	}
	hubFor, handOver, err := c.proxmoxHub(ctx, handed)
	if err != nil {
		return err
	}
	var nodes []target.Node
	for _, n := range c.Spec.Topology.Nodes {
		tn, err := c.targetNode(n, hubFor(n), true)
		if err != nil {
			return err
		}
		nodes = append(nodes, tn)
		if err := c.recordNodeAPI(tn); err != nil {
			return err
		}
	}
	admin, done, err := c.admin()
	if err != nil {
		return err
	}
	c.deployed = []target.Ensured{}
	err = t.EnsureNodes(ctx, nodes, admin.RegisterEK, func(e target.Ensured) { c.deployed = append(c.deployed, e) })
	done()
	if err != nil || handOver == nil {
		return err
	}
	return handOver()
}

// proxmoxHub settles where the deploy's hub is (deployProxmox says how)
// and returns the hub each node is told of, and the hand-over to run once
// the VMs exist (nil: none).
func (c *Cluster) proxmoxHub(ctx context.Context, handed *Handoff) (func(spec.Node) string, func() error, error) {
	if handed != nil {
		c.hubAddr, c.hubKeeper = handed.Addr, handed.Node
		c.ev.emit(HubKept{Node: handed.Node, Addr: handed.Addr, At: handed.At})
		return func(spec.Node) string { return handed.Addr }, nil, nil
	}
	if c.HubOn == "" {
		c.hubAddr = c.ProxmoxHub
		// cluster status and the node commands (--state) find the hub here.
		if err := os.MkdirAll(c.HubDir(), 0o700); err != nil {
			return nil, nil, err
		}
		if err := durable.WriteFile(filepath.Join(c.HubDir(), hubAddrFile), []byte(c.hubAddr+"\n"), 0o600); err != nil {
			return nil, nil, err
		}
		return func(spec.Node) string { return c.hubAddr }, nil, nil
	}
	if err := c.startHub(ctx, c.ProxmoxHub); err != nil {
		return nil, nil, err
	}
	if c.HubOn == HubOnHost {
		return func(spec.Node) string { return c.hubAddr }, nil, nil
	}
	master, err := c.master()
	if err != nil {
		return nil, nil, err
	}
	addr, err := c.nodeAddress(master)
	if err != nil {
		return nil, nil, err
	}
	// The workers look for the hub on the master from their first boot
	// (they retry until it answers); the master enrolls with this host's.
	nodeHub := netip.AddrPortFrom(addr.Addr(), api.HubPort).String()
	hubFor := func(n spec.Node) string {
		if n.Name == master.Name {
			return c.hubAddr
		}
		return nodeHub
	}
	handOver := func() error {
		if _, err := c.waitNodes(ctx, []spec.Node{master}, c.Timeout); err != nil {
			return err
		}
		return c.HandOver(ctx, master, nodeHub)
	}
	return hubFor, handOver, nil
}

// proxmoxOps is the Proxmox VE target's day-2 side (status with the guest
// agent, stop, destroy) for nodes: the VMs kubedos made for them, found by
// VMID and the description's marker; ok is false for any other target.
func (c *Cluster) proxmoxOps(t target.Target, nodes []spec.Node) (*proxmox.Deployer, proxmox.Plan, bool) {
	pt, ok := t.(*proxmox.Target)
	if !ok {
		return nil, proxmox.Plan{}, false
	}
	p := proxmox.Plan{Cluster: pt.Cluster}
	for _, n := range nodes {
		p.Nodes = append(p.Nodes, proxmox.Node{Shape: proxmox.Shape{VMID: n.VMID, Name: n.Name}})
	}
	return &proxmox.Deployer{C: pt.C, Step: c.ev.msg}, p, true
}

// statusProxmox reports a proxmox cluster: each VM from the API and its
// guest agent, and the nodes as the hub the VMs were deployed with lists
// them. That hub runs elsewhere: one not answering is a HubError.
func (c *Cluster) statusProxmox(ctx context.Context) (*Report, error) {
	c.hubAddr = c.ProxmoxHub
	if h, err := c.readHandoff(); err != nil {
		return nil, err
	} else if h != nil && c.hubAddr == "" {
		c.hubAddr, c.hubKeeper = h.Addr, h.Node
	}
	if c.hubAddr == "" {
		if b, err := os.ReadFile(filepath.Join(c.HubDir(), hubAddrFile)); err == nil {
			c.hubAddr = strings.TrimSpace(string(b))
		}
	}
	var nodes []api.Node
	var hubErr error
	if c.hubAddr != "" {
		var err error
		if nodes, hubErr, err = c.hubNodes(ctx); err != nil {
			return nil, err
		}
	}
	return c.reportWith(ctx, nodes, hubErr)
}

// proxmoxVMs is each spec node's VM as Proxmox VE and its guest agent see
// it (nil for a target other than *proxmox.Target: its Status is read).
func (c *Cluster) proxmoxVMs(ctx context.Context, t target.Target) (map[string]NodeReport, error) {
	d, p, ok := c.proxmoxOps(t, c.Spec.Topology.Nodes)
	if !ok {
		return nil, nil
	}
	states, err := d.Status(ctx, p)
	if err != nil {
		return nil, err
	}
	out := map[string]NodeReport{}
	for _, st := range states {
		nr := NodeReport{VM: st.VM, VMID: st.VMID, Host: st.Host, Agent: st.Agent, Addresses: st.Addresses}
		if st.Host != "" {
			nr.Console = fmt.Sprintf("qm terminal %d (on %s)", st.VMID, st.Host)
		}
		out[st.Name] = nr
	}
	return out, nil
}

// downProxmox stops the nodes' VMs through the API and, with destroy (the
// spec's destructive.destroyVMs, never a default), destroys them with
// their disks, EFI variables and TPM state. A VMID held by a guest kubedos
// did not make for the node is left alone and named in the error.
func (c *Cluster) downProxmox(ctx context.Context, t target.Target, nodes []spec.Node, destroy bool) ([]target.Ensured, error) {
	var out []target.Ensured
	report := func(e target.Ensured) {
		out = append(out, e)
		c.ev.emit(NodeDown{Name: e.Name, VMID: e.VMID, Action: e.Action})
	}
	d, p, ok := c.proxmoxOps(t, nodes)
	if ok {
		res, err := d.Down(ctx, p, destroy)
		for _, r := range res {
			report(target.Ensured{Name: r.Name, VMID: r.VMID, Action: r.Action})
		}
		return out, err
	}
	var errs []error
	for _, n := range nodes {
		e, err := stopOne(ctx, t, n)
		if err == nil && destroy && e.Action == target.ActionStopped {
			if err = t.Destroy(ctx, n.Name); err == nil {
				e.Action = target.ActionDestroyed
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		report(e)
	}
	return out, errors.Join(errs...)
}
