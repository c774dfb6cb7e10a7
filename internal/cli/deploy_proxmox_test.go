package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
)

func TestProxmoxPlan(t *testing.T) {
	s, err := spec.LoadBytes(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{BuildID: "b1", Roles: map[string]manifest.RoleManifest{}}
	for _, n := range s.Topology.Nodes {
		m.Roles[string(n.Role)] = manifest.RoleManifest{RoleID: "id-" + string(n.Role)}
	}
	plan, err := proxmoxPlan(s, m, "out/b1", "10.0.0.5:7443", "vars.fd", "work")
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Nodes) != len(s.Topology.Nodes) || plan.ImportStorage != "local" || plan.Cluster != s.Metadata.Name {
		t.Fatalf("plan %+v", plan)
	}
	macs := map[string]bool{}
	for i, n := range plan.Nodes {
		sn := s.Topology.Nodes[i]
		sh := n.Shape
		if sh.VMID != sn.VMID || sh.Name != sn.Name || sh.Cores != sn.CPUs || sh.MemoryMiB != sn.MemoryMiB ||
			sh.Storage != "local-lvm" || sh.Bridge != "vmbr0" {
			t.Errorf("%s: shape %+v", sn.Name, sh)
		}
		if n.ImageID != "id-"+string(sn.Role) || n.Image != filepath.Join("out/b1", "roles", string(sn.Role), build.FileDiskQcow2) {
			t.Errorf("%s: image %s (%s)", sn.Name, n.Image, n.ImageID)
		}
		id := strings.Join(sh.Identity, ";")
		for _, want := range []string{"kubedos.name=" + sn.Name, "kubedos.hub=10.0.0.5:7443", "kubedos.address=" + sn.Address + "/"} {
			if !strings.Contains(id, want) {
				t.Errorf("%s: identity %q lacks %q", sn.Name, id, want)
			}
		}
		if macs[sh.MAC] {
			t.Errorf("%s: MAC %s used twice", sn.Name, sh.MAC)
		}
		macs[sh.MAC] = true
		// Deploy fills in the uploaded volumes; the rest must render.
		sh.Disk, sh.Vars, sh.TPM = "local:import/d.qcow2", "local:import/v.raw", "local:import/t.raw"
		if _, err := sh.Form(); err != nil {
			t.Errorf("%s: %v", sn.Name, err)
		}
	}
	delete(m.Roles, "worker")
	if _, err := proxmoxPlan(s, m, "out/b1", "10.0.0.5:7443", "vars.fd", "work"); err == nil || !strings.Contains(err.Error(), "no image for role worker") {
		t.Errorf("missing role: %v", err)
	}
}
