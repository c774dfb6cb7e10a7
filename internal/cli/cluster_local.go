package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pidfile"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// localCluster is a spec's cluster on this machine.
type localCluster struct {
	spec     *spec.ClusterSpec
	specPath string
	keys     *sign.KeySet
	manifest *manifest.Manifest
	buildDir string
	dir      string
	pr       *progress
	hubAddr  string
	// hubOn is where the hub runs (HubOnMaster, HubOnHost); timeout bounds
	// each wait.
	hubOn   string
	timeout time.Duration
	// hubKeeper names the master that keeps the hub (cluster status);
	// hubErr is why it did not answer.
	hubKeeper string
	hubErr    error
	// reported is each node's state last printed.
	reported map[string]api.NodeState
}

func (c *localCluster) keysDir() string {
	if c.keys == nil {
		return "keys"
	}
	return c.keys.Dir
}

func (c *localCluster) hubDir() string             { return filepath.Join(c.dir, "hub") }
func (c *localCluster) nodeDir(name string) string { return filepath.Join(c.dir, "nodes", name) }

// segment is the cluster's LAN: a bridge in a network namespace of its own.
func (c *localCluster) segment() (qemu.Segment, error) {
	return qemu.NewSegment(c.spec.Metadata.Name, c.spec.Networking.LAN.CIDR, c.spec.Networking.LAN.Gateway)
}

func (c *localCluster) up(ctx context.Context) error {
	seg, err := c.segment()
	if err != nil {
		return err
	}
	if err := seg.Up(ctx); err != nil {
		return err
	}
	c.pr.Step("LAN %s: bridge in network namespace %s, host end %s", seg.Gateway, seg.Netns, seg.HostIf)
	vars, err := enrolledVars(c.keys)
	if err != nil {
		return err
	}
	handed, err := c.readHandoff()
	if err != nil {
		return err
	}
	if handed != nil {
		return c.upOnMasterHub(ctx, seg, vars, handed)
	}
	if err := c.startHub(ctx, netip.AddrPortFrom(seg.Gateway.Addr(), api.HubPort).String()); err != nil {
		return err
	}
	admin, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	// With the hub going to the master, the workers look for it there from
	// the start (they retry until it answers); the master enrolls with the
	// host's hub, then takes it over.
	nodeHub := c.hubAddr
	var master spec.Node
	if c.hubOn == HubOnMaster {
		if master, err = c.master(); err != nil {
			return err
		}
		if nodeHub, err = c.masterHubAddr(seg); err != nil {
			return err
		}
	}
	for _, n := range c.spec.Topology.Nodes {
		hubFor := nodeHub
		if n.Role == spec.RoleMaster {
			hubFor = c.hubAddr
		}
		if err := c.startNode(ctx, admin, seg, n, vars, hubFor); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if c.hubOn != HubOnMaster {
		return nil
	}
	if _, err := c.waitNodes(ctx, []spec.Node{master}, c.timeout); err != nil {
		return err
	}
	return c.handOver(ctx, master, nodeHub)
}

// upOnMasterHub starts a cluster whose master keeps the hub: the master
// first (it serves the hub from its state partition as it boots), then,
// once the hub answers, the other nodes, their EKs registered with it.
func (c *localCluster) upOnMasterHub(ctx context.Context, seg qemu.Segment, vars []byte, h *handoff) error {
	c.hubAddr, c.hubKeeper = h.Addr, h.Node
	c.pr.Step("the hub is kept by %s on %s (handed over %s)", h.Node, h.Addr, h.At.Format(time.RFC3339))
	var master spec.Node
	for _, n := range c.spec.Topology.Nodes {
		if n.Name == h.Node {
			master = n
		}
	}
	if master.Name == "" {
		return fmt.Errorf("the hub was handed to %s, which the spec no longer has", h.Node)
	}
	// Its EK is in the hub it keeps; nothing to register.
	if err := c.startNode(ctx, nil, seg, master, vars, h.Addr); err != nil {
		return fmt.Errorf("node %s: %w", master.Name, err)
	}
	if err := c.waitHub(ctx, c.timeout); err != nil {
		return err
	}
	admin, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	for _, n := range c.spec.Topology.Nodes {
		if n.Name == master.Name {
			continue
		}
		if err := c.startNode(ctx, admin, seg, n, vars, h.Addr); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// startHub starts `kubedos hub serve` detached on listen (the LAN
// gateway, so the nodes and this host reach it), unless it is running.
func (c *localCluster) startHub(ctx context.Context, listen string) error {
	pidFile, addrFile := filepath.Join(c.hubDir(), "hub.pid"), filepath.Join(c.hubDir(), "hub.addr")
	if addr, err := os.ReadFile(addrFile); err == nil && hubAlive(c.hubDir()) {
		c.hubAddr = strings.TrimSpace(string(addr))
		c.pr.Step("hub already running on %s", c.hubAddr)
		return nil
	}
	if err := os.MkdirAll(c.hubDir(), 0o700); err != nil {
		return err
	}
	c.hubAddr = listen
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(c.hubDir(), "hub.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	cmd := exec.Command(exe, "hub", "serve", abs(c.specPath), "--build", abs(c.buildDir), "--keys", abs(c.keys.Dir),
		"--state", abs(c.hubDir()), "--listen", c.hubAddr)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this command
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hub: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(addrFile, []byte(c.hubAddr+"\n"), 0o600); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("tcp", c.hubAddr); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) || !hubAlive(c.hubDir()) {
			return fmt.Errorf("hub did not start; see %s", filepath.Join(c.hubDir(), "hub.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.pr.Step("hub listening on %s (state %s)", c.hubAddr, c.hubDir())
	return nil
}

// hubAlive reports whether the hub started in dir runs.
func hubAlive(dir string) bool {
	_, ok := pidfile.Alive(filepath.Join(dir, "hub.pid"))
	return ok
}

func (c *localCluster) admin() (*api.AdminClient, func(), error) {
	hc := hubClient{addr: c.hubAddr, keys: c.keys.Dir}
	return hc.admin()
}

// startNode registers the VM's EK (unless admin is nil) and starts it,
// naming hubAddr as its hub, unless it is running.
func (c *localCluster) startNode(ctx context.Context, admin *api.AdminClient, seg qemu.Segment, n spec.Node, vars []byte, hubAddr string) error {
	dir := c.nodeDir(n.Name)
	if _, ok := qemu.Running(dir); ok {
		c.pr.Step("%s: already running", n.Name)
		return nil
	}
	rm, ok := c.manifest.Roles[string(n.Role)]
	if !ok {
		return fmt.Errorf("build %s has no image for role %s", c.manifest.BuildID, n.Role)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base, err := filepath.Abs(filepath.Join(c.buildDir, "roles", string(n.Role), build.FileDiskQcow2))
	if err != nil {
		return err
	}
	disk, marker := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "image")
	if prev, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(prev)) != rm.RoleID {
		if !c.spec.Destructive.RecreateVMs {
			return fmt.Errorf("its disk holds image %s, the build has %s: recreating the VM destroys its data; set destructive.recreateVMs to allow it (upgrades go through kubedos node upgrade)",
				strings.TrimSpace(string(prev)), rm.RoleID)
		}
		c.pr.Step("%s: recreating the disk for image %s (destructive.recreateVMs)", n.Name, rm.RoleID)
		_ = os.Remove(disk)
	}
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk).CombinedOutput(); err != nil {
			return fmt.Errorf("disk: %w: %s", err, out)
		}
		if err := os.WriteFile(marker, []byte(rm.RoleID+"\n"), 0o644); err != nil {
			return err
		}
	}
	addr, err := seg.NodeAddress(n.Address)
	if err != nil {
		return fmt.Errorf("topology.nodes[%s].address: %w", n.Name, err)
	}
	apiAddr := netip.AddrPortFrom(addr.Addr(), api.NodeAPIPort).String()
	if err := os.WriteFile(filepath.Join(dir, "api.addr"), []byte(apiAddr+"\n"), 0o644); err != nil {
		return err
	}
	tap := fmt.Sprintf("tap%d", n.VMID)
	if err := seg.AddTap(ctx, tap); err != nil {
		return err
	}
	ek, err := qemu.ReadEK(ctx, dir)
	if err != nil {
		return err
	}
	hash := attest.EKHash(ek)
	if admin != nil {
		if err := admin.RegisterEK(ctx, n.Name, hash); err != nil {
			return fmt.Errorf("register EK with the hub: %w", err)
		}
	}
	err = qemu.StartDetached(ctx, qemu.VMConfig{Name: "kubedos-" + n.Name, Dir: dir, Disk: disk, Vars: vars,
		MemoryMiB: n.MemoryMiB, CPUs: n.CPUs, Reboot: true,
		UUID: build.DerivedUUID(c.spec.Metadata.Name, n.Name), Serial: fmt.Sprintf("kubedos-%d", n.VMID),
		OEMStrings: []string{"kubedos.name=" + n.Name, "kubedos.hub=" + hubAddr, "kubedos.address=" + addr.String()},
		TAP:        &qemu.TAP{Netns: seg.Netns, Name: tap, MAC: qemu.MAC(c.spec.Metadata.Name + "/" + n.Name)}})
	if err != nil {
		return err
	}
	c.pr.Step("%s: started (%s, EK %s…, hub %s); node API on %s; console %s", n.Name, n.Role, hash[:16], hubAddr, apiAddr, filepath.Join(dir, "serial.log"))
	return nil
}

// waitEnrolled polls the hub until every spec node is enrolled, one is
// quarantined (an error naming it and why), or timeout.
func (c *localCluster) waitEnrolled(ctx context.Context, timeout time.Duration) ([]api.Node, error) {
	return c.waitNodes(ctx, c.spec.Topology.Nodes, timeout)
}

// waitNodes is waitEnrolled for some nodes.
func (c *localCluster) waitNodes(ctx context.Context, want []spec.Node, timeout time.Duration) ([]api.Node, error) {
	admin, done, err := c.admin()
	if err != nil {
		return nil, err
	}
	defer done()
	deadline := time.Now().Add(timeout)
	if c.reported == nil {
		c.reported = map[string]api.NodeState{}
	}
	reported := c.reported
	for {
		res, err := admin.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		byName := map[string]api.Node{}
		for _, n := range res.Nodes {
			byName[n.Name] = n
		}
		enrolled := 0
		var bad []string
		for _, sn := range want {
			n := byName[sn.Name]
			if n.State != reported[sn.Name] && n.State != "" {
				c.pr.Step("%s: %s", sn.Name, n.State)
				reported[sn.Name] = n.State
			}
			switch n.State {
			case api.NodeEnrolled:
				enrolled++
			case api.NodeQuarantined, api.NodeRevoked, api.NodeFenced:
				bad = append(bad, fmt.Sprintf("%s is %s: %s", sn.Name, n.State, reasonText(n.Reason, 0)))
			}
		}
		if len(bad) > 0 {
			return res.Nodes, fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		if enrolled == len(want) {
			c.pr.Step("%d of %d nodes enrolled", enrolled, len(want))
			return res.Nodes, nil
		}
		c.pr.Update("%d/%d nodes enrolled", enrolled, len(want))
		if time.Now().After(deadline) {
			return res.Nodes, fmt.Errorf("%d of %d nodes enrolled after %s; see the consoles in %s", enrolled, len(want), timeout, filepath.Join(c.dir, "nodes"))
		}
		select {
		case <-ctx.Done():
			return res.Nodes, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
