package proxmox

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/spec"
)

// referenceImageSize stands in for a role's qcow2 (the real one is about
// 106 MiB): big enough to show uploads dominate, small enough for the
// stand-in's memory.
const referenceImageSize = 8 << 20

// referencePlan is the 16-node reference platform of examples/reference.yaml
// on the fixture's stand-in: one image per role, shapes from the spec.
func referencePlan(t testing.TB, fx *deployFixture) Plan {
	t.Helper()
	s, err := spec.Load(filepath.Join("..", "..", "..", "examples", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	images := map[spec.Role]string{}
	p := fx.plan
	p.Cluster, p.Nodes = s.Metadata.Name, nil
	for _, n := range s.Topology.Nodes {
		img, ok := images[n.Role]
		if !ok {
			img = filepath.Join(dir, string(n.Role)+".qcow2")
			b := make([]byte, referenceImageSize)
			_, _ = rand.Read(b)
			if err := os.WriteFile(img, b, 0o644); err != nil {
				t.Fatal(err)
			}
			images[n.Role] = img
		}
		p.Nodes = append(p.Nodes, Node{Image: img, ImageID: string(n.Role) + "-r1", Shape: Shape{
			VMID: n.VMID, Name: n.Name, Cores: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGiB: n.DiskGiB,
			Storage: "local-lvm", Bridge: "vmbr0", MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", n.VMID>>16&0xff, n.VMID>>8&0xff, n.VMID&0xff),
			UUID: fmt.Sprintf("6f1e6b9c-0000-4000-8000-%012d", n.VMID), Serial: fmt.Sprintf("kubedos-%d", n.VMID),
			Identity: []string{"kubedos.name=" + n.Name, "kubedos.hub=10.10.10.10:7443", "kubedos.address=" + n.Address + "/24"},
			Tags:     []string{"kubedos", "kubedos-" + s.Metadata.Name}}})
	}
	return p
}

// TestReferenceTopologyDeploys deploys the 16-node reference platform to
// the stand-in: each role image sent once, every VM made, grown to its
// diskGiB and started; again, nothing changes; status shows all 16;
// down stops them and keeps them.
func TestReferenceTopologyDeploys(t *testing.T) {
	fx := newDeployFixture(t)
	p := referencePlan(t, fx)
	ctx := context.Background()
	start := time.Now()
	res, err := fx.d.Deploy(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if len(res) != 16 {
		t.Fatalf("%d results", len(res))
	}
	// 8 roles' images and the variable store once, and a TPM per VM.
	uploads := len(fx.f.CallsMatching("POST /nodes/pve1/storage/local/upload"))
	var tpmBytes int64
	for _, r := range res {
		tpmBytes += int64(len(fx.tpmByEK[r.EKHash]))
	}
	wantBytes := 8*referenceImageSize + VarsSize + tpmBytes
	if uploads != 8+1+16 || fx.f.UploadedBytes() != wantBytes {
		t.Errorf("%d uploads, %d bytes; want 25 and %d (each role image once)", uploads, fx.f.UploadedBytes(), wantBytes)
	}
	for _, n := range p.Nodes {
		vm, ok := fx.f.VM(n.Shape.VMID)
		if !ok || !vm.Running || fx.f.DiskSize(vm.Config["virtio0"]) != int64(n.Shape.DiskGiB)<<30 {
			t.Errorf("%s: %+v, want running with a %d GiB disk", n.Shape.Name, vm, n.Shape.DiskGiB)
		}
	}
	t.Logf("FIGURE 16-node reference deploy to the stand-in: %s, %d uploads, %d bytes uploaded", elapsed.Round(time.Millisecond), uploads, fx.f.UploadedBytes())

	changes := func() int {
		return len(fx.f.CallsMatching("POST")) + len(fx.f.CallsMatching("PUT")) + len(fx.f.CallsMatching("DELETE"))
	}
	before := changes()
	start = time.Now()
	if res, err = fx.d.Deploy(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Action != ActionUnchanged {
			t.Errorf("second deploy: %+v", r)
		}
	}
	if changes() != before {
		t.Errorf("the second deploy changed things: %v", fx.f.Calls[before:])
	}
	t.Logf("FIGURE second deploy of 16 (no-op): %s", time.Since(start).Round(time.Millisecond))

	st, err := fx.d.Status(ctx, p)
	if err != nil || len(st) != 16 || st[15].VM != "running" || st[15].Agent != "not running" {
		t.Fatalf("status %+v, %v", st, err)
	}
	down, err := fx.d.Down(ctx, p, false)
	if err != nil || len(down) != 16 || down[0].Action != ActionStopped {
		t.Fatalf("down %+v, %v", down, err)
	}
	for _, n := range p.Nodes {
		if vm, ok := fx.f.VM(n.Shape.VMID); !ok || vm.Running {
			t.Errorf("%s after down: %v %+v", n.Shape.Name, ok, vm)
		}
	}
}

// BenchmarkDeployReference16 is a first deploy of the reference platform:
// version, privileges, cluster resources, 25 uploads (8 MiB role images),
// 16 VMs created, grown and started, against the stand-in on loopback.
func BenchmarkDeployReference16(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		fx := newDeployFixture(b)
		p := referencePlan(b, fx)
		b.StartTimer()
		if _, err := fx.d.Deploy(ctx, p); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fx.f.UploadedBytes()), "upload-B/op")
	}
}

// BenchmarkDeploy16Unchanged is a second deploy of the reference platform
// (every VM there already): version, privileges, cluster resources, one
// config read per node.
func BenchmarkDeploy16Unchanged(b *testing.B) {
	fx := newDeployFixture(b)
	p := referencePlan(b, fx)
	ctx := context.Background()
	if _, err := fx.d.Deploy(ctx, p); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := fx.d.Deploy(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
