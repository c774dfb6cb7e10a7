package cluster

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
)

// referenceSpec is examples/reference.yaml (16 nodes, 8 roles) with a
// manifest naming its roles.
func referenceSpec(t *testing.T) (*spec.ClusterSpec, *manifest.Manifest) {
	t.Helper()
	return specWithManifest(t, examples.Reference)
}

// The rest of the lifecycle of the 16-node reference platform on Proxmox VE
// (its stand-in): deployed without waiting, status shows every VM running
// with its guest agent, down stops them all and keeps them (VMs, disks and
// the hub elsewhere untouched), fence stops only its node, and down with
// destructive.destroyVMs leaves nothing on the server.
func TestProxmoxLifecycleReference(t *testing.T) {
	s, m := referenceSpec(t)
	if len(s.Topology.Nodes) != 16 {
		t.Fatalf("the reference topology has %d nodes, want 16", len(s.Topology.Nodes))
	}
	fx := newProxmoxFixture(t, s, m)
	ctx := context.Background()
	pve := fx.pve
	var events []Event
	cfg := fx.cfg
	cfg.Events = EventFunc(func(e Event) { events = append(events, e) })

	// Up, no wait.
	c := New(cfg)
	if nodes, err := c.Up(ctx); err != nil || nodes != nil {
		t.Fatalf("Up: %v, %v", nodes, err)
	}
	if got := len(c.Deployed()); got != 16 {
		t.Fatalf("deploy reported %d nodes", got)
	}
	configs := map[int]map[string]string{}
	for _, n := range s.Topology.Nodes {
		vm, ok := pve.VM(n.VMID)
		if !ok || !vm.Running {
			t.Fatalf("%s: VM %d after Up: %v %+v", n.Name, n.VMID, ok, vm)
		}
		configs[n.VMID] = vm.Config
	}
	master := s.Topology.Nodes[0]
	// The master's guest agent answers; the others' have not started.
	pve.SetAgent(master.VMID, []proxmoxtest.Interface{
		{Name: "lo", IPAddresses: []proxmoxtest.IPAddr{{Address: "127.0.0.1", Type: "ipv4", Prefix: 8}}},
		{Name: "ens18", MAC: "52:54:00:00:00:01", IPAddresses: []proxmoxtest.IPAddr{{Address: master.Address, Type: "ipv4", Prefix: 24}}}})

	// Status: from a fresh front end that knows only the spec and the
	// state directory (the hub's address was kept by the deploy).
	stCfg := cfg
	stCfg.ProxmoxHub, stCfg.Events = "", nil
	rep, err := New(stCfg).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Target != spec.TargetProxmox || rep.HubOn != HubOnExternal || rep.Hub != fx.hubAddr || rep.LAN != nil || rep.HubError != "" {
		t.Errorf("report: target %q, hub %q on %q, LAN %+v, hub error %q", rep.Target, rep.Hub, rep.HubOn, rep.LAN, rep.HubError)
	}
	if len(rep.Nodes) != 16 {
		t.Fatalf("status shows %d nodes", len(rep.Nodes))
	}
	for i, nr := range rep.Nodes {
		sn := s.Topology.Nodes[i]
		wantAPI := netip.AddrPortFrom(netip.MustParseAddr(sn.Address), api.NodeAPIPort).String()
		if nr.Name != sn.Name || nr.VM != "running" || nr.VMID != sn.VMID || nr.Host != "pve1" ||
			nr.State != api.NodePending || nr.API != wantAPI || !strings.Contains(nr.Console, "qm terminal") {
			t.Errorf("status of %s: %+v", sn.Name, nr)
		}
		switch {
		case i == 0 && (nr.Agent != "up" || !slices.Equal(nr.Addresses, []string{"ens18 " + master.Address + "/24"})):
			t.Errorf("master's guest agent: %q %q, want up with its LAN address only", nr.Agent, nr.Addresses)
		case i > 0 && (nr.Agent != "not running" || nr.Addresses != nil):
			t.Errorf("%s's guest agent: %q %q, want not running", sn.Name, nr.Agent, nr.Addresses)
		}
	}

	// Down, destroyVMs off: every VM stopped and kept, with its disks; the
	// hub (not ours on proxmox) keeps running.
	events = nil
	down, err := New(cfg).Down(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, "down", down, s, target.ActionStopped)
	if got := countDown(events, target.ActionStopped); got != 16 {
		t.Errorf("%d NodeDown stopped events, want 16", got)
	}
	for _, n := range s.Topology.Nodes {
		vm, ok := pve.VM(n.VMID)
		if !ok || vm.Running {
			t.Errorf("%s after down: present %v, %+v", n.Name, ok, vm)
		}
		for _, d := range []string{"virtio0", "tpmstate0", "efidisk0"} {
			if _, ok := pve.Disk(configs[n.VMID][d]); !ok {
				t.Errorf("%s after down: %s %q is gone", n.Name, d, configs[n.VMID][d])
			}
		}
	}
	if !fx.hubs.Alive(fx.opHub) {
		t.Error("cluster down on proxmox stopped a hub on this host")
	}
	rep, err = New(stCfg).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, nr := range rep.Nodes {
		if nr.VM != "stopped" || nr.Agent != "off" {
			t.Errorf("status after down: %s %s agent %q", nr.Name, nr.VM, nr.Agent)
		}
	}

	// Deployed again: the kept VMs are started, not remade.
	c = New(cfg)
	if _, err := c.Up(ctx); err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, "redeploy", c.Deployed(), s, target.ActionStarted)

	// Fence one node: only its VM stops.
	fenced := s.Topology.Nodes[5]
	res, err := New(stCfg).StopNode(ctx, fenced.Name)
	if err != nil || res.Name != fenced.Name || res.VMID != fenced.VMID || res.Action != target.ActionStopped {
		t.Fatalf("StopNode(%s): %+v, %v", fenced.Name, res, err)
	}
	for _, n := range s.Topology.Nodes {
		if vm, ok := pve.VM(n.VMID); !ok || vm.Running != (n.Name != fenced.Name) {
			t.Errorf("after fencing %s: %s present %v running %v", fenced.Name, n.Name, ok, vm.Running)
		}
	}
	if _, err := New(stCfg).StopNode(ctx, "nobody"); err == nil {
		t.Error("StopNode of a node the spec does not have succeeded")
	}

	// Down with destructive.destroyVMs: every VM (running or fenced)
	// destroyed with its disks, EFI variables and TPM state.
	destroy := *s
	destroy.Destructive.DestroyVMs = true
	dCfg := cfg
	dCfg.Spec = &destroy
	events = nil
	down, err = New(dCfg).Down(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, "down with destroyVMs", down, s, target.ActionDestroyed)
	if got := countDown(events, target.ActionDestroyed); got != 16 {
		t.Errorf("%d NodeDown destroyed events, want 16", got)
	}
	for _, n := range s.Topology.Nodes {
		if vm, ok := pve.VM(n.VMID); ok {
			t.Errorf("%s: VM %d left after down with destroyVMs: %+v", n.Name, n.VMID, vm)
		}
		for _, d := range []string{"virtio0", "tpmstate0", "efidisk0"} {
			if _, ok := pve.Disk(configs[n.VMID][d]); ok {
				t.Errorf("%s: %s %q left after down with destroyVMs", n.Name, d, configs[n.VMID][d])
			}
		}
	}
	if again, err := New(dCfg).Down(ctx, false); err != nil {
		t.Fatal(err)
	} else {
		checkOutcomes(t, "second down", again, s, target.ActionAbsent)
	}

	// A VMID of the spec held by a guest kubedos did not make: down leaves
	// it running and says so, and still handles the others.
	lb := s.Topology.Nodes[15]
	pve.AddVM(lb.VMID, map[string]string{"name": "someone-else", "description": "not kubedos"}, true)
	down, err = New(dCfg).Down(ctx, false)
	if !errors.Is(err, proxmox.ErrVMIDTaken) || !strings.Contains(err.Error(), lb.Name) {
		t.Errorf("down over a foreign VMID: %v, want ErrVMIDTaken naming %s", err, lb.Name)
	}
	if vm, ok := pve.VM(lb.VMID); !ok || !vm.Running {
		t.Errorf("the foreign VM %d was touched: present %v %+v", lb.VMID, ok, vm)
	}
	if len(down) != 15 {
		t.Errorf("down reported %d nodes beside the foreign one, want 15", len(down))
	}
	rep, err = New(stCfg).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := rep.Nodes[15]; last.VM != "foreign" || last.Agent != "" {
		t.Errorf("status of %s over a foreign VMID: %+v", lb.Name, last)
	}
}

func checkOutcomes(t *testing.T, what string, got []target.Ensured, s *spec.ClusterSpec, want target.Action) {
	t.Helper()
	if len(got) != len(s.Topology.Nodes) {
		t.Errorf("%s: %d outcomes, want %d", what, len(got), len(s.Topology.Nodes))
		return
	}
	for i, e := range got {
		if n := s.Topology.Nodes[i]; e.Name != n.Name || e.VMID != n.VMID || e.Action != want {
			t.Errorf("%s: %+v, want %s VM %d %s", what, e, n.Name, n.VMID, want)
		}
	}
}

func countDown(events []Event, a target.Action) int {
	n := 0
	for _, e := range events {
		if d, ok := e.(NodeDown); ok && d.Action == a {
			n++
		}
	}
	return n
}
