package proxmox

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
)

func TestDiskGrownToDiskGiB(t *testing.T) {
	fx := newDeployFixture(t)
	ctx := context.Background()
	fx.plan.Nodes[0].Shape.DiskGiB = 2
	if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
		t.Fatal(err)
	}
	vm, _ := fx.f.VM(100)
	if got := fx.f.DiskSize(vm.Config["virtio0"]); got != 2<<30 || !strings.Contains(vm.Config["virtio0"], "size=2G") {
		t.Errorf("disk %q is %d bytes, want 2 GiB", vm.Config["virtio0"], got)
	}
	if vm, _ := fx.f.VM(101); fx.f.DiskSize(vm.Config["virtio0"]) != int64(len("worker image")) {
		t.Errorf("diskGiB 0 changed the disk: %q", vm.Config["virtio0"])
	}
	// A larger diskGiB later grows the disk of the running VM; the same
	// size again changes nothing.
	fx.plan.Nodes[0].Shape.DiskGiB = 3
	for range 2 {
		if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(fx.f.CallsMatching("PUT /nodes/pve1/qemu/100/resize")); got != 2 {
		t.Errorf("%d resizes, want one at creation and one for the new size", got)
	}
	// An image larger than diskGiB is refused before anything is made
	// (the server never shrinks a disk).
	qcow := filepath.Join(t.TempDir(), "big.qcow2")
	hdr := make([]byte, 32)
	copy(hdr, "QFI\xfb")
	binary.BigEndian.PutUint64(hdr[24:], 5<<30)
	if err := os.WriteFile(qcow, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	fx.plan.Nodes[2].Image, fx.plan.Nodes[2].Shape.DiskGiB = qcow, 4
	before := len(fx.f.Calls)
	if _, err := fx.d.Deploy(ctx, fx.plan); err == nil || !strings.Contains(err.Error(), "node w-2: diskGiB 4 is smaller than the image") {
		t.Errorf("image of 5 GiB, diskGiB 4: %v", err)
	}
	if calls := fx.f.Calls[before:]; len(calls) != 1 || calls[0] != "GET /version" {
		t.Errorf("a refused plan made calls past /version: %v", calls)
	}
	// Shrinking is refused by the server too.
	if err := fx.d.C.ResizeDisk(ctx, 100, "virtio0", 1); err == nil || !strings.Contains(err.Error(), "shrinking disks is not supported") {
		t.Errorf("shrink: %v", err)
	}
}

func TestStatusThroughTheGuestAgent(t *testing.T) {
	fx := newDeployFixture(t)
	ctx := context.Background()
	fx.f.AddVM(102, map[string]string{"name": "payroll"}, true)
	fx.plan.Nodes = fx.plan.Nodes[:2]
	if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
		t.Fatal(err)
	}
	if err := fx.d.C.StopVM(ctx, 101); err != nil {
		t.Fatal(err)
	}
	// Before the guest runs its agent, and once it reports its network.
	st, err := fx.d.Status(ctx, fx.plan)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].VM != "running" || st[0].Agent != "not running" || st[0].Image != "m1" || st[0].Host != "pve1" || st[1].VM != "stopped" || st[1].Agent != "off" {
		t.Errorf("status %+v", st)
	}
	if err := fx.d.C.AgentPing(ctx, 100); err == nil {
		t.Error("ping answered with no agent running")
	}
	fx.f.SetAgent(100, []proxmoxtest.Interface{
		{Name: "lo", IPAddresses: []proxmoxtest.IPAddr{{Address: "127.0.0.1", Type: "ipv4", Prefix: 8}}},
		{Name: "ens18", MAC: "52:54:00:00:00:64", IPAddresses: []proxmoxtest.IPAddr{{Address: "10.0.0.10", Type: "ipv4", Prefix: 24}}}})
	if err := fx.d.C.AgentPing(ctx, 100); err != nil {
		t.Fatal(err)
	}
	st, _ = fx.d.Status(ctx, fx.plan)
	if st[0].Agent != "up" || !slices.Equal(st[0].Addresses, []string{"ens18 10.0.0.10/24"}) {
		t.Errorf("status %+v", st[0])
	}
	fx.plan.Nodes = append(fx.plan.Nodes, Node{Shape: Shape{VMID: 102, Name: "w-2"}})
	st, _ = fx.d.Status(ctx, fx.plan)
	if st[2].VM != "foreign" || st[2].Image != "" {
		t.Errorf("a VM kubedos did not make: %+v", st[2])
	}
}

func TestDownStopsAndDestroysOnlyWithTheOptIn(t *testing.T) {
	fx := newDeployFixture(t)
	ctx := context.Background()
	if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
		t.Fatal(err)
	}
	r, err := fx.d.Stop(ctx, fx.plan, "w-1") // node fence
	if err != nil || r.Action != ActionStopped {
		t.Fatalf("stop: %+v, %v", r, err)
	}
	if vm, _ := fx.f.VM(101); vm.Running {
		t.Error("fenced VM still running")
	}
	if _, err := fx.d.Stop(ctx, fx.plan, "nobody"); err == nil {
		t.Error("stopped a node not in the plan")
	}
	fx.f.AddVM(103, map[string]string{"name": "payroll"}, true)
	fx.plan.Nodes = append(fx.plan.Nodes, Node{Shape: Shape{VMID: 103, Name: "w-3"}}, Node{Shape: Shape{VMID: 104, Name: "w-4"}})
	res, err := fx.d.Down(ctx, fx.plan, false)
	if !errors.Is(err, ErrVMIDTaken) || !strings.Contains(err.Error(), "payroll") {
		t.Errorf("down: %v, want the foreign VM named and left alone", err)
	}
	want := []Action{ActionStopped, ActionStopped, ActionStopped, ActionAbsent}
	if got := actions(res); !slices.Equal(got, want) {
		t.Errorf("down: %v, want %v", got, want)
	}
	for _, id := range []int{100, 101, 102} {
		if vm, ok := fx.f.VM(id); !ok || vm.Running {
			t.Errorf("VM %d after down without the opt-in: %+v, %v; want stopped, kept", id, vm, ok)
		}
	}
	if vm, _ := fx.f.VM(103); !vm.Running {
		t.Error("down stopped a VM kubedos did not make")
	}
	res, _ = fx.d.Down(ctx, fx.plan, true)
	if got := actions(res); !slices.Equal(got, []Action{ActionDestroyed, ActionDestroyed, ActionDestroyed, ActionAbsent}) {
		t.Errorf("down with destroy: %v", got)
	}
	for _, id := range []int{100, 101, 102} {
		if _, ok := fx.f.VM(id); ok {
			t.Errorf("VM %d survived destroy", id)
		}
	}
	if _, ok := fx.f.VM(103); !ok {
		t.Error("destroy removed a VM kubedos did not make")
	}
}

func actions(res []Result) []Action {
	var out []Action
	for _, r := range res {
		out = append(out, r.Action)
	}
	return out
}

func TestMachinePinned(t *testing.T) {
	fx := newDeployFixture(t)
	ctx := context.Background()
	fx.plan.Machine = "pc-q35-10.0"
	fx.plan.Nodes[1].Shape.Machine = "pc-q35-9.2+pve1"
	if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{100: "pc-q35-10.0", 101: "pc-q35-9.2+pve1"} {
		if vm, _ := fx.f.VM(id); vm.Config["machine"] != want {
			t.Errorf("VM %d: machine %q, want %q", id, vm.Config["machine"], want)
		}
	}
	// An existing VM on another version is reported, not changed.
	fx.plan.Machine = ""
	res, err := fx.d.Deploy(ctx, fx.plan)
	if err != nil || res[0].Action != ActionUnchanged || !strings.Contains(res[0].Note, "pc-q35-10.0") {
		t.Errorf("%+v, %v", res, err)
	}
	fx.plan.Machine = "q35"
	if _, err := fx.d.Deploy(ctx, fx.plan); err == nil || !strings.Contains(err.Error(), "pinned q35") {
		t.Errorf("unpinned machine: %v", err)
	}
}
