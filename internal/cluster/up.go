package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
)

// Up brings the cluster up on its target and waits until every node
// enrolls (Timeout; 0 skips the wait on proxmox). On qemu: the LAN, the
// hub on its gateway, one VM per node with its EK registered, and the hub
// handed to the master (HubOn master). On proxmox: the VMs, their EKs
// registered with ProxmoxHub, which serves the cluster elsewhere. The
// nodes are returned as the hub last listed them (nil if never asked),
// with the error of the wait.
func (c *Cluster) Up(ctx context.Context) ([]api.Node, error) {
	if c.MaxBooting < 0 {
		return nil, invalid("--max-booting %d: want 0 (every node at once) or more", c.MaxBooting)
	}
	switch c.targetName() {
	case spec.TargetQEMU:
		if c.HubOn != HubOnMaster && c.HubOn != HubOnHost {
			return nil, invalid("--hub-on %q: want %s or %s", c.HubOn, HubOnMaster, HubOnHost)
		}
		if err := c.upLocal(ctx); err != nil {
			return nil, err
		}
	case spec.TargetProxmox:
		if c.MaxBooting != 0 {
			return nil, invalid("--max-booting applies to the local qemu target, not %s", spec.TargetProxmox)
		}
		if err := c.deployProxmox(ctx); err != nil || c.Timeout == 0 {
			return nil, err
		}
	default:
		return nil, invalid("target %q is not deployable yet (qemu and proxmox are)", c.targetName())
	}
	return c.waitNodes(ctx, c.Spec.Topology.Nodes, c.Timeout)
}

// target is where the cluster's machines are: Config.Target, else the
// Proxmox VE node of targets.proxmox when the cluster runs there, else the
// local qemu target. Enough to read, stop and destroy machines; making them
// needs more (startTarget, deployProxmox).
func (c *Cluster) target() (target.Target, error) {
	switch {
	case c.Target != nil:
		return c.Target, nil
	case c.targetName() == spec.TargetProxmox:
		// No work directory or variable store: nothing is made here.
		return c.proxmoxTarget("")
	}
	return c.qemuTarget()
}

// startTarget is the qemu target able to start VMs: with the platform's keys
// enrolled in the variable store.
func (c *Cluster) startTarget() (target.Target, error) {
	if c.Target != nil {
		return c.Target, nil
	}
	t, err := c.qemuTarget()
	if err != nil {
		return nil, err
	}
	if c.Keys == nil {
		return nil, errors.New("the key set is needed to start VMs (their Secure Boot keys)")
	}
	if t.Vars, err = EnrolledVars(c.Keys); err != nil {
		return nil, err
	}
	return t, nil
}

func (c *Cluster) upLocal(ctx context.Context) error {
	t, err := c.startTarget()
	if err != nil {
		return err
	}
	desc, err := t.EnsureNetwork(ctx)
	if err != nil {
		return err
	}
	c.ev.emit(NetworkUp{Desc: desc})
	handed, err := c.readHandoff()
	if err != nil {
		return err
	}
	if handed != nil {
		return c.upOnMasterHub(ctx, t, handed)
	}
	listen := c.HubListen
	if listen == "" {
		gw, err := netip.ParseAddr(c.Spec.Networking.LAN.Gateway)
		if err != nil {
			return fmt.Errorf("networking.lan.gateway: %w", err)
		}
		listen = netip.AddrPortFrom(gw, api.HubPort).String()
	}
	if err := c.startHub(ctx, listen); err != nil {
		return err
	}
	// With the hub going to the master, the workers look for it there from
	// the start (they retry until it answers); the master enrolls with the
	// host's hub, then takes it over.
	nodeHub := c.hubAddr
	var master spec.Node
	if c.HubOn == HubOnMaster {
		if master, err = c.master(); err != nil {
			return err
		}
		addr, err := c.nodeAddress(master)
		if err != nil {
			return err
		}
		nodeHub = netip.AddrPortFrom(addr.Addr(), api.HubPort).String()
	}
	hubFor := func(n spec.Node) string {
		if n.Role == spec.RoleMaster {
			return c.hubAddr
		}
		return nodeHub
	}
	if c.MaxBooting > 0 && c.HubOn == HubOnMaster {
		// The master alone first: it takes the hub, and the others are
		// registered with it there, batch by batch.
		if err := c.startNodes(ctx, t, []spec.Node{master}, hubFor, true); err != nil {
			return err
		}
		if _, err := c.waitNodes(ctx, []spec.Node{master}, c.Timeout); err != nil {
			return err
		}
		if err := c.HandOver(ctx, master, nodeHub); err != nil {
			return err
		}
		return c.startBatches(ctx, t, without(c.Spec.Topology.Nodes, master.Name), hubFor)
	}
	if c.HubOn != HubOnMaster {
		return c.startBatches(ctx, t, c.Spec.Topology.Nodes, hubFor)
	}
	if err := c.startNodes(ctx, t, c.Spec.Topology.Nodes, hubFor, true); err != nil {
		return err
	}
	if _, err := c.waitNodes(ctx, []spec.Node{master}, c.Timeout); err != nil {
		return err
	}
	return c.HandOver(ctx, master, nodeHub)
}

// startBatches starts nodes MaxBooting at a time, each batch once the
// previous one enrolled (all at once when MaxBooting is 0), in bootOrder;
// Up waits for the last batch with the rest.
func (c *Cluster) startBatches(ctx context.Context, t target.Target, nodes []spec.Node, hubFor func(spec.Node) string) error {
	size := c.MaxBooting
	if size <= 0 {
		size = len(nodes)
	}
	nodes = bootOrder(nodes)
	for i := 0; i < len(nodes); i += size {
		batch := nodes[i:min(i+size, len(nodes))]
		if err := c.startNodes(ctx, t, batch, hubFor, true); err != nil {
			return err
		}
		if i+size >= len(nodes) {
			break
		}
		if _, err := c.waitNodes(ctx, batch, c.Timeout); err != nil {
			return err
		}
	}
	return nil
}

// bootRank orders batched boots by what the convergence waits for
// longest: etcd's quorum, then the API servers on it, then what holds
// their VIP, then the kubelets; nothing waits for the rest. In spec order
// the reference's load balancers came last, and the API through the VIP
// waited for them ~1,000 s after the control planes were up.
var bootRank = map[spec.Role]int{spec.RoleMaster: 0, spec.RoleEtcd: 1, spec.RoleControlPlane: 2,
	spec.RoleLoadBalancer: 3, spec.RoleWorker: 4}

// bootOrder is nodes by bootRank, spec order within a rank (the others last).
func bootOrder(nodes []spec.Node) []spec.Node {
	out := slices.Clone(nodes)
	rank := func(n spec.Node) int {
		if r, ok := bootRank[n.Role]; ok {
			return r
		}
		return len(bootRank)
	}
	slices.SortStableFunc(out, func(a, b spec.Node) int { return rank(a) - rank(b) })
	return out
}

func without(nodes []spec.Node, name string) []spec.Node {
	var out []spec.Node
	for _, n := range nodes {
		if n.Name != name {
			out = append(out, n)
		}
	}
	return out
}

// upOnMasterHub starts a cluster whose master keeps the hub: the master
// first (it serves the hub from its state partition as it boots), then,
// once the hub answers, the other nodes, their EKs registered with it.
func (c *Cluster) upOnMasterHub(ctx context.Context, t target.Target, h *Handoff) error {
	c.hubAddr, c.hubKeeper = h.Addr, h.Node
	c.ev.emit(HubKept{Node: h.Node, Addr: h.Addr, At: h.At})
	var master spec.Node
	var others []spec.Node
	for _, n := range c.Spec.Topology.Nodes {
		if n.Name == h.Node {
			master = n
		} else {
			others = append(others, n)
		}
	}
	if master.Name == "" {
		return fmt.Errorf("the hub was handed to %s, which the spec no longer has", h.Node)
	}
	hubFor := func(spec.Node) string { return h.Addr }
	// Its EK is in the hub it keeps; nothing to register.
	if err := c.startNodes(ctx, t, []spec.Node{master}, hubFor, false); err != nil {
		return err
	}
	if err := c.waitHub(ctx, c.Timeout); err != nil {
		return err
	}
	return c.startBatches(ctx, t, others, hubFor)
}

// recordNodeAPI writes where the operator reaches the node's API: its LAN
// address.
func (c *Cluster) recordNodeAPI(tn target.Node) error {
	addr := netip.AddrPortFrom(tn.Identity.Address.Addr(), api.NodeAPIPort).String()
	if err := os.MkdirAll(c.NodeDir(tn.Name), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(c.NodeDir(tn.Name), "api.addr"), []byte(addr+"\n"), 0o644)
}

// startNodes has the target make and start the nodes, each naming its
// hub, their EKs registered with the hub at c.hubAddr when register.
func (c *Cluster) startNodes(ctx context.Context, t target.Target, nodes []spec.Node, hubFor func(spec.Node) string, register bool) error {
	var tns []target.Node
	bySpec := map[string]spec.Node{}
	for _, n := range nodes {
		tn, err := c.targetNode(n, hubFor(n), false)
		if err != nil {
			return err
		}
		tns = append(tns, tn)
		bySpec[n.Name] = n
		if err := c.recordNodeAPI(tn); err != nil {
			return err
		}
	}
	var reg target.RegisterEK
	if register {
		admin, done, err := c.admin()
		if err != nil {
			return err
		}
		defer done()
		reg = admin.RegisterEK
	}
	return t.EnsureNodes(ctx, tns, reg, func(e target.Ensured) {
		n := bySpec[e.Name]
		st, _ := t.Status(ctx, e.Name)
		addr, _ := c.nodeAddress(n)
		c.ev.emit(NodeStarted{Name: e.Name, Role: string(n.Role), EKHash: e.EKHash, Hub: hubFor(n),
			API: netip.AddrPortFrom(addr.Addr(), api.NodeAPIPort).String(), Console: st.Console,
			Already: e.Action == target.ActionUnchanged})
	})
}
