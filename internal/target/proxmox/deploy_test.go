package proxmox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
)

type deployFixture struct {
	f        *proxmoxtest.Fake
	d        *Deployer
	plan     Plan
	ekByNode map[string]string
	// vmAtRegister records whether the VM existed when its EK was registered.
	vmAtRegister map[string]bool
	// tpmByEK is the TPM state MakeTPM wrote, by EK hash.
	tpmByEK map[string][]byte
}

func newDeployFixture(t testing.TB) *deployFixture {
	t.Helper()
	f, c := newFake(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The variable store has OVMF_VARS_4M.fd's size, as the build's does.
	varsBody := []byte(strings.Repeat("ovmf vars ", VarsSize/10+1))[:VarsSize]
	master, worker, vars := write("master.qcow2", "master image"), write("worker.qcow2", "worker image"), write("vars.fd", string(varsBody))
	fx := &deployFixture{f: f, ekByNode: map[string]string{}, vmAtRegister: map[string]bool{}, tpmByEK: map[string][]byte{}}
	node := func(name string, vmid int, image, imageID string) Node {
		return Node{Image: image, ImageID: imageID, Shape: Shape{VMID: vmid, Name: name, Cores: 2, MemoryMiB: 2048,
			Storage: "local-lvm", Bridge: "vmbr0", MAC: fmt.Sprintf("52:54:00:00:00:%02x", vmid%256),
			UUID: fmt.Sprintf("6f1e6b9c-0000-4000-8000-%012d", vmid), Serial: fmt.Sprintf("kubedos-%d", vmid),
			Identity: []string{"kubedos.name=" + name, "kubedos.hub=10.0.0.10:7443", fmt.Sprintf("kubedos.address=10.0.0.%d/24", vmid-90)},
			Tags:     []string{"kubedos", "kubedos-lab"}}}
	}
	fx.plan = Plan{Cluster: "lab", Vars: vars, ImportStorage: "local", WorkDir: dir, Nodes: []Node{
		node("master", 100, master, "m1"), node("w-1", 101, worker, "w1"), node("w-2", 102, worker, "w1")}}
	fx.d = &Deployer{C: c,
		MakeTPM: func(_ context.Context, path string) (string, error) {
			seed := make([]byte, 32)
			_, _ = rand.Read(seed)
			sum := sha256.Sum256(seed)
			ek := hex.EncodeToString(sum[:])
			fx.tpmByEK[ek] = seed
			return ek, os.WriteFile(path, seed, 0o600)
		},
		RegisterEK: func(_ context.Context, node, ek string) error {
			fx.ekByNode[node] = ek
			for _, n := range fx.plan.Nodes {
				if n.Shape.Name == node {
					_, fx.vmAtRegister[node] = f.VM(n.Shape.VMID)
				}
			}
			return nil
		}}
	return fx
}

func TestDeployMakesEveryVM(t *testing.T) {
	fx := newDeployFixture(t)
	ctx := context.Background()
	res, err := fx.d.Deploy(ctx, fx.plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("results %+v", res)
	}
	// Two disk images and the vars once each, one TPM per node.
	if got := fx.f.CallsMatching("POST /nodes/pve1/storage/local/upload"); len(got) != 6 {
		t.Errorf("%d uploads, want 3 images + 3 TPMs: %v", len(got), got)
	}
	for _, r := range res {
		if r.Action != ActionCreated || r.EKHash == "" || fx.ekByNode[r.Name] != r.EKHash {
			t.Errorf("%+v: want created with its EK registered", r)
		}
		if fx.vmAtRegister[r.Name] {
			t.Errorf("%s: EK registered after its VM was made", r.Name)
		}
		vm, ok := fx.f.VM(r.VMID)
		if !ok || !vm.Running {
			t.Fatalf("VM %d: %+v, want running", r.VMID, vm)
		}
		cfg := vm.Config
		for key, want := range map[string]string{
			"machine": DefaultMachine, "bios": "ovmf", "boot": "order=virtio0", "name": r.Name, "agent": "1",
			"efidisk0":  "pre-enrolled-keys=0",
			"tpmstate0": "version=v2.0",
			"net0":      "bridge=vmbr0",
			"tags":      "kubedos;kubedos-lab",
		} {
			if !strings.Contains(cfg[key], want) {
				t.Errorf("%s: %s = %q, want %q in it", r.Name, key, cfg[key], want)
			}
		}
		// What the VM holds: the variable store whole, the TPM state as
		// made here (padded to the volume's 4 MiB).
		if vars, _ := fx.f.Disk(cfg["efidisk0"]); string(vars) != string(varsOf(t, fx)) {
			t.Errorf("%s: efidisk holds %d bytes, not the variable store", r.Name, len(vars))
		}
		tpm, _ := fx.f.Disk(cfg["tpmstate0"])
		if seed := fx.tpmByEK[r.EKHash]; len(tpm) != TPMStateSize || string(tpm[:len(seed)]) != string(seed) {
			t.Errorf("%s: tpmstate holds %d bytes, want the TPM made here padded to %d", r.Name, len(tpm), TPMStateSize)
		}
		if !strings.HasPrefix(cfg["description"], marker("lab", r.Name, "")) {
			t.Errorf("%s: description %q", r.Name, cfg["description"])
		}
		sku := ""
		for _, kv := range strings.Split(cfg["smbios1"], ",") {
			if v, ok := strings.CutPrefix(kv, "sku="); ok {
				b, _ := base64.StdEncoding.DecodeString(v)
				sku = string(b)
			}
		}
		if !strings.Contains(sku, "kubedos.name="+r.Name+";kubedos.hub=10.0.0.10:7443;kubedos.address=") {
			t.Errorf("%s: SMBIOS SKU %q lacks the identity", r.Name, sku)
		}
	}
	// The TPMs' state (their seeds) is neither left on the storage nor here.
	vols, _ := fx.d.C.Volumes(ctx, "local", "import")
	for _, v := range vols {
		if strings.Contains(v.VolID, "tpm") {
			t.Errorf("TPM state left on the storage: %s", v.VolID)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(fx.plan.WorkDir, "tpm-*")); len(left) != 0 {
		t.Errorf("TPM state left here: %v", left)
	}

	// Again: nothing changes, nothing is sent.
	before := len(fx.f.CallsMatching("POST"))
	res, err = fx.d.Deploy(ctx, fx.plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Action != ActionUnchanged {
			t.Errorf("second deploy: %+v", r)
		}
	}
	if after := fx.f.CallsMatching("POST"); len(after) != before {
		t.Errorf("second deploy changed things: %v", after[before:])
	}
}

func TestDeployExistingVMs(t *testing.T) {
	ctx := context.Background()
	t.Run("stopped is started", func(t *testing.T) {
		fx := newDeployFixture(t)
		if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
			t.Fatal(err)
		}
		if err := fx.d.C.StopVM(ctx, 101); err != nil {
			t.Fatal(err)
		}
		res, err := fx.d.Deploy(ctx, fx.plan)
		if err != nil || res[1].Action != ActionStarted {
			t.Fatalf("%+v, %v", res, err)
		}
		if vm, _ := fx.f.VM(101); !vm.Running {
			t.Error("not started")
		}
	})
	t.Run("a VMID someone else holds", func(t *testing.T) {
		fx := newDeployFixture(t)
		fx.f.AddVM(101, map[string]string{"name": "payroll", "description": "do not touch"}, true)
		_, err := fx.d.Deploy(ctx, fx.plan)
		if err == nil || !strings.Contains(err.Error(), "VMID 101 is taken") || !strings.Contains(err.Error(), "payroll") {
			t.Fatalf("err %v", err)
		}
		if vm, _ := fx.f.VM(101); vm.Config["name"] != "payroll" || !vm.Running {
			t.Error("the foreign VM was touched")
		}
	})
	t.Run("another image", func(t *testing.T) {
		fx := newDeployFixture(t)
		if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
			t.Fatal(err)
		}
		oldEK := fx.ekByNode["w-1"]
		fx.plan.Nodes[1].ImageID = "w2"
		_, err := fx.d.Deploy(ctx, fx.plan)
		if err == nil || !strings.Contains(err.Error(), "destructive.recreateVMs") || !strings.Contains(err.Error(), "w-1") {
			t.Fatalf("without the opt-in: %v", err)
		}
		fx.plan.Recreate = true
		// The hub refuses the new machine's EK (w-1 is enrolled there and
		// was not replaced): the old VM must survive.
		register := fx.d.RegisterEK
		fx.d.RegisterEK = func(ctx context.Context, node, ek string) error {
			if node == "w-1" {
				return fmt.Errorf("node w-1 is enrolled with EK %s; replace it before registering another", oldEK)
			}
			return register(ctx, node, ek)
		}
		if _, err := fx.d.Deploy(ctx, fx.plan); err == nil || !strings.Contains(err.Error(), "replace it") {
			t.Fatalf("hub refusing the EK: %v", err)
		}
		if vm, ok := fx.f.VM(101); !ok || !vm.Running || !strings.Contains(vm.Config["description"], "image w1") {
			t.Fatalf("the old VM was touched although its successor could not enroll: %+v", vm)
		}
		fx.d.RegisterEK = register
		res, err := fx.d.Deploy(ctx, fx.plan)
		if err != nil || res[1].Action != ActionRecreated || res[0].Action != ActionUnchanged {
			t.Fatalf("%+v, %v", res, err)
		}
		if fx.ekByNode["w-1"] == oldEK {
			t.Error("a recreated VM kept its TPM: a new machine needs a new identity")
		}
		if vm, _ := fx.f.VM(101); !vm.Running || !strings.Contains(vm.Config["description"], "image w2") {
			t.Errorf("recreated VM %+v", vm)
		}
	})
}

func TestDeployFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("old release", func(t *testing.T) {
		fx := newDeployFixture(t)
		fx.f.Release = "8.3"
		if _, err := fx.d.Deploy(ctx, fx.plan); err == nil || !strings.Contains(err.Error(), "needs 8.4") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("start fails", func(t *testing.T) {
		fx := newDeployFixture(t)
		fx.f.FailTasks = map[string]string{"qmstart": "start failed: swtpm exited"}
		_, err := fx.d.Deploy(ctx, fx.plan)
		if err == nil || !strings.Contains(err.Error(), "node master (VM 100)") || !strings.Contains(err.Error(), "swtpm exited") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("hub refuses the EK", func(t *testing.T) {
		fx := newDeployFixture(t)
		fx.d.RegisterEK = func(context.Context, string, string) error { return fmt.Errorf("permission denied") }
		_, err := fx.d.Deploy(ctx, fx.plan)
		if err == nil || !strings.Contains(err.Error(), "register EK") {
			t.Fatalf("err %v", err)
		}
		if _, ok := fx.f.VM(100); ok {
			t.Error("a VM was made whose EK the hub does not know")
		}
	})
	t.Run("identity too long for smbios1", func(t *testing.T) {
		fx := newDeployFixture(t)
		fx.plan.Nodes[0].Shape.Identity = []string{"kubedos.name=" + strings.Repeat("m", 400)}
		_, err := fx.d.Deploy(ctx, fx.plan)
		if err == nil || !strings.Contains(err.Error(), "Proxmox VE allows 512") {
			t.Fatalf("err %v", err)
		}
	})
}

func varsOf(t testing.TB, fx *deployFixture) []byte {
	t.Helper()
	b, err := os.ReadFile(fx.plan.Vars)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
