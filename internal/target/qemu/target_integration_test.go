//go:build integration

package qemu_test

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubedos/kubedos/internal/nodeid"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/qemu"
	"github.com/kubedos/kubedos/internal/target/targettest"
)

// TestTargetConformance runs the suite on real VMs: one node whose disk
// boots nothing (the firmware keeps looking), enough to check start,
// stop, status and destroy at a small cost. Needs root.
func TestTargetConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespace, tap, swtpm")
	}
	targettest.Suite(t, func(t *testing.T) targettest.Harness {
		dir := t.TempDir()
		base := filepath.Join(dir, "empty.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "16M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v: %s", err, out)
		}
		vars, err := os.ReadFile(qemu.OVMFVarsBlank)
		if err != nil {
			t.Skipf("OVMF: %v", err)
		}
		seg, err := qemu.NewSegment("ktt", "10.251.7.0/24", "10.251.7.1")
		if err != nil {
			t.Fatal(err)
		}
		tg := &qemu.Target{Segment: seg, Dir: filepath.Join(dir, "nodes"), Vars: vars, Step: t.Logf}
		n := target.Node{Name: "w-1", Role: "worker", VMID: 901, CPUs: 1, MemoryMiB: 256, Image: base, ImageID: "empty",
			UUID: "6f1e6b9c-0000-4000-8000-000000000901", Serial: "kubedos-901", MAC: qemu.MAC("ktt/w-1"),
			Identity: nodeid.Identity{Name: "w-1", Hub: "10.251.7.1:7443", Address: netip.MustParsePrefix("10.251.7.21/24")}}
		return targettest.Harness{Target: tg, Nodes: []target.Node{n}}
	})
}
