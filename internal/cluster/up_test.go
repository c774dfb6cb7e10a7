package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
)

// recorder keeps a run's events.
type recorder struct {
	mu     sync.Mutex
	all    []Event
	waits  []Event
	onWait func()
}

func (r *recorder) Event(e Event) {
	r.mu.Lock()
	if _, ok := e.(Transient); ok {
		r.waits = append(r.waits, e)
	} else {
		r.all = append(r.all, e)
	}
	onWait := r.onWait
	r.mu.Unlock()
	if _, ok := e.(Transient); ok && onWait != nil {
		onWait()
	}
}

// fakeTarget keeps machines in memory; a machine's EK is its name's hash.
type fakeTarget struct {
	net     bool
	running map[string]bool
	made    []target.Node
}

func (f *fakeTarget) EnsureNetwork(context.Context) (string, error) {
	f.net = true
	return "fake LAN", nil
}
func (f *fakeTarget) RemoveNetwork(context.Context) error { f.net = false; return nil }

func (f *fakeTarget) EnsureNodes(ctx context.Context, nodes []target.Node, register target.RegisterEK, done func(target.Ensured)) error {
	for _, n := range nodes {
		if f.running[n.Name] {
			done(target.Ensured{Name: n.Name, VMID: n.VMID, Action: target.ActionUnchanged})
			continue
		}
		sum := sha256.Sum256([]byte(n.Name))
		e := target.Ensured{Name: n.Name, VMID: n.VMID, Action: target.ActionCreated, EKHash: hex.EncodeToString(sum[:])}
		if register != nil {
			if err := register(ctx, n.Name, e.EKHash); err != nil {
				return err
			}
		}
		f.running[n.Name] = true
		f.made = append(f.made, n)
		done(e)
	}
	return nil
}

func (f *fakeTarget) Start(_ context.Context, name string) error { f.running[name] = true; return nil }
func (f *fakeTarget) Stop(_ context.Context, name string) error  { f.running[name] = false; return nil }
func (f *fakeTarget) Destroy(_ context.Context, name string) error {
	delete(f.running, name)
	return nil
}
func (f *fakeTarget) Status(_ context.Context, name string) (target.Status, error) {
	st := target.Status{State: target.StateAbsent, Console: "console-of-" + name}
	if r, ok := f.running[name]; ok {
		st.State = map[bool]target.State{true: target.StateRunning, false: target.StateStopped}[r]
	}
	return st, nil
}

// TestUpDrivesTargetAndHub drives the library as a second front end
// would: no CLI, an in-process hub, a fake target. Nothing enrolls (no
// node boots), so Up ends at its wait with every EK registered.
// upFixture is a local cluster's config over a fake target and an
// in-process hub on the host, events recorded.
func upFixture(t *testing.T) (Config, *fakeTarget, *inProcessHub, *recorder) {
	s, m := localSpec(t)
	ks := testKeys(t)
	ft := &fakeTarget{running: map[string]bool{}}
	hubs := &inProcessHub{t: t, spec: s, m: m, ks: ks, runs: map[string]func(){}}
	ev := &recorder{}
	cfg := Config{Spec: s, SpecPath: "cluster.yaml", Keys: ks, Manifest: m, BuildDir: "out/b1", Dir: t.TempDir(),
		HubOn: HubOnHost, TargetName: spec.TargetQEMU, Events: ev, Hub: hubs, HubListen: freeAddr(t), Target: ft}
	return cfg, ft, hubs, ev
}

func TestUpDrivesTargetAndHub(t *testing.T) {
	cfg, ft, hubs, ev := upFixture(t)
	c := New(cfg)
	ctx := context.Background()
	_, err := c.Up(ctx)
	if err == nil || !strings.Contains(err.Error(), "0 of 4 nodes enrolled") {
		t.Fatalf("Up: %v, want the wait to end with none enrolled", err)
	}
	if !ft.net || len(ft.made) != 4 {
		t.Fatalf("target: network %v, made %d machines", ft.net, len(ft.made))
	}
	for _, n := range ft.made {
		if n.Identity.Hub != cfg.HubListen || n.Identity.Gateway.IsValid() || n.ImageID != "id-"+n.Role ||
			n.Image != filepath.Join("out/b1", "roles", n.Role, "disk.qcow2") {
			t.Errorf("%s: made as %+v", n.Name, n)
		}
	}
	var started, states []string
	for _, e := range ev.all {
		switch e := e.(type) {
		case NodeStarted:
			started = append(started, e.Name)
		case NodeState:
			states = append(states, e.Name+"="+e.State)
		}
	}
	if !slices.Equal(started, []string{"master", "w-1", "w-2", "mon"}) {
		t.Errorf("NodeStarted for %v", started)
	}
	// The hub holds each registered EK: it lists the nodes as pending.
	rep, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hub != cfg.HubListen || rep.HubOn != "host" || len(rep.Nodes) != 4 {
		t.Fatalf("status %+v", rep)
	}
	for _, n := range rep.Nodes {
		sum := sha256.Sum256([]byte(n.Name))
		if n.VM != "running" || n.EKHash != hex.EncodeToString(sum[:]) || n.Console != "console-of-"+n.Name {
			t.Errorf("status of %s: %+v", n.Name, n)
		}
	}
	if len(states) != 4 {
		t.Errorf("node state events %v, want one per node", states)
	}

	// Again: the hub and the machines are left alone.
	*ev = recorder{}
	if _, err := New(cfg).Up(ctx); err == nil {
		t.Fatal("second Up enrolled nodes that never booted")
	}
	var already int
	for _, e := range ev.all {
		switch e := e.(type) {
		case HubStarted:
			if !e.Already {
				t.Error("a second hub was started")
			}
		case NodeStarted:
			if e.Already {
				already++
			}
		}
	}
	if already != 4 {
		t.Errorf("%d nodes reported already running, want 4", already)
	}

	down, err := New(cfg).Down(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(down) != 4 || down[0].Action != target.ActionStopped {
		t.Errorf("down reported %+v, want 4 nodes stopped", down)
	}
	if ft.net || hubs.Alive(c.HubDir()) || slices.Contains([]bool{ft.running["master"], ft.running["w-1"], ft.running["w-2"]}, true) {
		t.Errorf("after Down: network %v, hub alive %v, running %v", ft.net, hubs.Alive(c.HubDir()), ft.running)
	}
}

// TestUpMaxBooting: with MaxBooting the second batch is not started
// until the first enrolled; here nothing boots, so Up stops after the
// first batch, naming it.
func TestUpMaxBooting(t *testing.T) {
	cfg, ft, _, _ := upFixture(t)
	cfg.Timeout, cfg.MaxBooting = time.Millisecond, 2
	c := New(cfg)
	_, err := c.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "0 of 2 nodes enrolled") {
		t.Fatalf("Up: %v, want the wait for the first batch of 2 to end", err)
	}
	var made []string
	for _, n := range ft.made {
		made = append(made, n.Name)
	}
	if !slices.Equal(made, []string{"master", "w-1"}) {
		t.Errorf("made %v before the first batch enrolled, want [master w-1]", made)
	}
	if _, err := New(cfg).Down(context.Background(), false); err != nil || ft.net {
		t.Errorf("Down: %v, network up %v", err, ft.net)
	}
}

func TestUpRefuses(t *testing.T) {
	s, m := localSpec(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"hub-on", Config{HubOn: "moon", TargetName: spec.TargetQEMU}, `--hub-on "moon"`},
		{"target", Config{TargetName: "iso"}, `target "iso" is not deployable yet`},
		{"proxmox without hub", Config{TargetName: spec.TargetProxmox}, "--hub is required"},
		{"proxmox bad hub", Config{TargetName: spec.TargetProxmox, ProxmoxHub: "hub:7443"}, "want an IP address and port"},
		{"max-booting negative", Config{HubOn: HubOnHost, TargetName: spec.TargetQEMU, MaxBooting: -1}, "--max-booting -1"},
		{"max-booting on proxmox", Config{TargetName: spec.TargetProxmox, ProxmoxHub: "10.0.0.5:7443", MaxBooting: 2}, "--max-booting applies to the local qemu target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Spec, tc.cfg.Manifest, tc.cfg.Dir = s, m, t.TempDir()
			_, err := New(tc.cfg).Up(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Up: %v, want %q", err, tc.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error %v is not classed ErrInvalid", err)
			}
		})
	}
}

// TestTargetNode: what a target is told of each spec node (the reference
// spec's 16 nodes, as a Proxmox deploy makes them).
func TestTargetNode(t *testing.T) {
	s, err := spec.LoadBytes(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{BuildID: "b1", Roles: map[string]manifest.RoleManifest{}}
	for _, n := range s.Topology.Nodes {
		m.Roles[string(n.Role)] = manifest.RoleManifest{RoleID: "id-" + string(n.Role)}
	}
	c := New(Config{Spec: s, Manifest: m, BuildDir: "out/b1"})
	macs := map[string]bool{}
	for _, sn := range s.Topology.Nodes {
		n, err := c.targetNode(sn, "10.0.0.5:7443", true)
		if err != nil {
			t.Fatal(err)
		}
		if n.VMID != sn.VMID || n.CPUs != sn.CPUs || n.MemoryMiB != sn.MemoryMiB || n.ImageID != "id-"+string(sn.Role) ||
			n.Image != filepath.Join("out/b1", "roles", string(sn.Role), build.FileDiskQcow2) {
			t.Errorf("%s: %+v", sn.Name, n)
		}
		strs, err := n.Identity.Strings()
		if err != nil {
			t.Fatalf("%s: %v", sn.Name, err)
		}
		id := strings.Join(strs, ";")
		for _, want := range []string{"kubedos.name=" + sn.Name, "kubedos.hub=10.0.0.5:7443", "kubedos.address=" + sn.Address + "/",
			"kubedos.gateway=" + s.Networking.LAN.Gateway} {
			if !strings.Contains(id, want) {
				t.Errorf("%s: identity %q lacks %q", sn.Name, id, want)
			}
		}
		if macs[n.MAC] {
			t.Errorf("%s: MAC %s used twice", sn.Name, n.MAC)
		}
		macs[n.MAC] = true
	}
	delete(m.Roles, "worker")
	for _, sn := range s.Topology.Nodes {
		if sn.Role == spec.RoleWorker {
			if _, err := c.targetNode(sn, "10.0.0.5:7443", true); err == nil || !strings.Contains(err.Error(), "no image for role worker") {
				t.Errorf("missing role: %v", err)
			}
			break
		}
	}
}

// Batched boots go in the order the convergence waits for: the
// reference's load balancers before its workers, the nodes nothing waits
// for last, spec order within a role.
func TestBootOrder(t *testing.T) {
	var nodes []spec.Node
	for _, n := range []struct {
		name string
		role spec.Role
	}{{"prometheus", spec.RolePrometheus}, {"grafana", spec.RoleGrafana}, {"storage", spec.RoleStorage},
		{"etcd-1", spec.RoleEtcd}, {"etcd-2", spec.RoleEtcd}, {"cp-1", spec.RoleControlPlane}, {"cp-2", spec.RoleControlPlane},
		{"w-1", spec.RoleWorker}, {"w-2", spec.RoleWorker}, {"lb-1", spec.RoleLoadBalancer}, {"lb-2", spec.RoleLoadBalancer}} {
		nodes = append(nodes, spec.Node{Name: n.name, Role: n.role})
	}
	var got []string
	for _, n := range bootOrder(nodes) {
		got = append(got, n.Name)
	}
	want := []string{"etcd-1", "etcd-2", "cp-1", "cp-2", "lb-1", "lb-2", "w-1", "w-2", "prometheus", "grafana", "storage"}
	if !slices.Equal(got, want) {
		t.Errorf("boot order %v, want %v", got, want)
	}
	if nodes[0].Name != "prometheus" {
		t.Error("bootOrder reordered its argument")
	}
}
