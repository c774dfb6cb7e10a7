package cluster

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
)

// With --hub-on master a proxmox deploy serves the hub from this host on
// --hub, tells the master of it and every other node of the master, and
// hands the hub over once the master enrolled; later deploys register with
// the master. Nothing boots here, so the hand-over ends at its wait for the
// master (the e2e TestProxmoxDeploy boots the master and sees it taken).
func TestDeployProxmoxHubOnMaster(t *testing.T) {
	s, m := localSpec(t)
	ks := testKeys(t)
	hubs := &inProcessHub{t: t, spec: s, m: m, ks: ks, runs: map[string]func(){}}
	ctx := context.Background()
	cfg := Config{Spec: s, SpecPath: "cluster.yaml", Keys: ks, Manifest: m, BuildDir: "out/b1", Dir: t.TempDir(),
		TargetName: spec.TargetProxmox, ProxmoxHub: freeAddr(t), Hub: hubs}

	t.Run("refused without a wait", func(t *testing.T) {
		c := cfg
		c.HubOn, c.Target = HubOnMaster, &fakeTarget{running: map[string]bool{}}
		if _, err := New(c).Up(ctx); err == nil || !strings.Contains(err.Error(), "--timeout") {
			t.Fatalf("Up: %v, want a refusal naming --timeout", err)
		}
	})

	ft := &fakeTarget{running: map[string]bool{}}
	c := cfg
	c.HubOn, c.Timeout, c.Target = HubOnMaster, 300*time.Millisecond, ft
	_, err := New(c).Up(ctx)
	if err == nil || !strings.Contains(err.Error(), "0 of 1 nodes enrolled") {
		t.Fatalf("Up: %v, want the hand-over to wait for the master", err)
	}
	if !hubs.Alive(New(c).HubDir()) {
		t.Fatal("the hub this host serves is not running: nothing could have enrolled")
	}
	master, _ := New(c).master()
	maddr, err := netip.ParseAddr(master.Address)
	if err != nil {
		t.Fatal(err)
	}
	onMaster := netip.AddrPortFrom(maddr, api.HubPort).String()
	if len(ft.made) != 4 {
		t.Fatalf("made %d VMs, want 4", len(ft.made))
	}
	for _, n := range ft.made {
		want := onMaster
		if n.Name == master.Name {
			want = cfg.ProxmoxHub
		}
		if n.Identity.Hub != want || !n.Identity.Gateway.IsValid() {
			t.Errorf("%s: told of hub %q (gateway %v), want %q", n.Name, n.Identity.Hub, n.Identity.Gateway, want)
		}
	}

	// down stops the hub this host serves along with the VMs.
	if _, err := New(c).Down(ctx, false); err != nil {
		t.Fatal(err)
	}
	if hubs.Alive(New(c).HubDir()) {
		t.Error("cluster down left the hub this host serves running")
	}

	// Handed over: every node is told of the master's hub, and no hub is
	// started here (the EKs go to the master's, served here by a stand-in).
	keeper := t.TempDir()
	kaddr := freeAddr(t)
	if err := hubs.Start(ctx, HubSpec{KeysDir: ks.Dir, StateDir: keeper, Listen: kaddr}); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(Handoff{Node: master.Name, Addr: kaddr, At: time.Now()})
	if err := os.WriteFile(filepath.Join(New(c).HubDir(), HandoffFile), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	ft2 := &fakeTarget{running: map[string]bool{}}
	c2 := c
	c2.Target, c2.ProxmoxHub, c2.Timeout = ft2, "", 0
	var ev recorder
	c2.Events = &ev
	if _, err := New(c2).Up(ctx); err != nil {
		t.Fatalf("deploy after the hand-over: %v", err)
	}
	if hubs.Alive(New(c2).HubDir()) {
		t.Error("a hub was started here although the master keeps it")
	}
	for _, n := range ft2.made {
		if n.Identity.Hub != kaddr {
			t.Errorf("%s: told of hub %q, want the master's %q", n.Name, n.Identity.Hub, kaddr)
		}
	}
	// status finds the hub where the hand-over left it, on the master.
	rep, err := New(c2).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hub != kaddr || rep.HubOn != master.Name || rep.HubError != "" {
		t.Errorf("status after the hand-over: hub %s on %s (%s), want %s on %s", rep.Hub, rep.HubOn, rep.HubError, kaddr, master.Name)
	}
	var kept bool
	for _, e := range ev.all {
		if k, ok := e.(HubKept); ok && k.Node == master.Name {
			kept = true
		}
	}
	if !kept {
		t.Error("no HubKept event naming the master")
	}
}
