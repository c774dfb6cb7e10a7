package proxmox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// What a real Proxmox VE refuses or changes, one test each; every one of
// them failed against the client before issue 15 (see docs/proxmox.md).

// nothingChanged checks a refused deploy left the cluster and the hub as
// they were: no call but reads, no EK registered.
func nothingChanged(t *testing.T, fx *deployFixture) {
	t.Helper()
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if calls := fx.f.CallsMatching(m); len(calls) > 0 {
			t.Errorf("a refused deploy changed things: %v", calls)
		}
	}
	if len(fx.ekByNode) > 0 {
		t.Errorf("a refused deploy registered EKs: %v", fx.ekByNode)
	}
}

func TestImportDrivesUseSizeZero(t *testing.T) {
	s := Shape{VMID: 100, Name: "m", Cores: 1, MemoryMiB: 512, Storage: "local-lvm", Bridge: "vmbr0", MAC: "52:54:00:00:00:01",
		UUID: "6f1e6b9c-0000-4000-8000-000000000100", Disk: "local:import/d.qcow2", Vars: "local:import/v.raw", TPM: "local:import/t.raw"}
	form, err := s.Form()
	if err != nil {
		t.Fatal(err)
	}
	for _, drive := range []string{"efidisk0", "tpmstate0", "virtio0"} {
		if v := form.Get(drive); !strings.HasPrefix(v, "local-lvm:0,") || !strings.Contains(v, ",import-from=local:import/") {
			t.Errorf("%s = %q: qemu-server takes import-from only with STORAGE:0", drive, v)
		}
	}
}

func TestMissingImportSourceFailsTheTask(t *testing.T) {
	_, c := newFake(t)
	s := Shape{VMID: 100, Name: "m", Cores: 1, MemoryMiB: 512, Storage: "local-lvm", Bridge: "vmbr0", MAC: "52:54:00:00:00:01",
		UUID: "6f1e6b9c-0000-4000-8000-000000000100", Disk: "local:import/gone.qcow2", Vars: "local:import/gone.raw", TPM: "local:import/gone-tpm.raw"}
	form, err := s.Form()
	if err != nil {
		t.Fatal(err)
	}
	err = c.CreateVM(context.Background(), form)
	var te *TaskError
	if !errors.As(err, &te) || !strings.Contains(te.ExitStatus, "cannot import from 'local:import/gone.raw'") {
		t.Fatalf("err %v: the server checks the source in the create task, which fails", err)
	}
	if _, err := c.VMConfig(context.Background(), 100); err == nil {
		t.Error("a failed create left a VM")
	}
}

func TestUploadSendsContentLength(t *testing.T) {
	// The stand-in answers a chunked body 501 and reads the fields in
	// pve-http-server's order; an upload of a file bigger than any buffer
	// must arrive whole.
	f, c := newFake(t)
	p := filepath.Join(t.TempDir(), "big.raw")
	body := []byte(strings.Repeat("0123456789abcdef", 300_000)) // 4.6 MiB
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum, _ := fileSHA256(p)
	volid, err := c.Upload(context.Background(), "local", "big.raw", p, sum)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Volume(volid); string(got) != string(body) || f.UploadedBytes() != int64(len(body)) {
		t.Errorf("stored %d bytes, want %d", len(got), len(body))
	}
}

func TestVarsMustBeTheEFIDiskSize(t *testing.T) {
	fx := newDeployFixture(t)
	// Proxmox VE keeps the first 540,672 bytes of a VARS import: a larger
	// store would lose its end, a smaller one gain zeros.
	if err := os.WriteFile(fx.plan.Vars, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := fx.d.Deploy(context.Background(), fx.plan)
	if err == nil || !strings.Contains(err.Error(), fx.plan.Vars) || !strings.Contains(err.Error(), "540672") {
		t.Fatalf("err %v, want the file named and the size it must have", err)
	}
	nothingChanged(t, fx)
}

func TestTPMStateOverVolumeSizeRefused(t *testing.T) {
	fx := newDeployFixture(t)
	fx.d.MakeTPM = func(_ context.Context, path string) (string, error) {
		return strings.Repeat("e", 64), os.WriteFile(path, make([]byte, TPMStateSize+1), 0o600)
	}
	_, err := fx.d.Deploy(context.Background(), fx.plan)
	if err == nil || !strings.Contains(err.Error(), "tpmstate0 volume holds 4194304") {
		t.Fatalf("err %v", err)
	}
	if calls := fx.f.CallsMatching("POST"); len(calls) > 0 {
		t.Errorf("TPM state the volume cannot hold was sent: %v", calls)
	}
}

func TestTagsAsTheServerStoresThem(t *testing.T) {
	fx := newDeployFixture(t)
	for i := range fx.plan.Nodes {
		fx.plan.Nodes[i].Shape.Tags = []string{"kubedos-Lab", "kubedos", "kubedos"}
	}
	if _, err := fx.d.Deploy(context.Background(), fx.plan); err != nil {
		t.Fatal(err)
	}
	vm, _ := fx.f.VM(100)
	sent := NormalTags(fx.plan.Nodes[0].Shape.Tags)
	if got, want := vm.Config["tags"], "kubedos;kubedos-lab"; got != want || sent != want {
		t.Errorf("server stored tags %q, client sends %q; want both %q (lower-cased, sorted, once)", got, sent, want)
	}
}

func TestMulticastMACRefusedFirst(t *testing.T) {
	fx := newDeployFixture(t)
	fx.plan.Nodes[2].Shape.MAC = "53:54:00:00:00:66" // I/G bit set
	_, err := fx.d.Deploy(context.Background(), fx.plan)
	if err == nil || !strings.Contains(err.Error(), "53:54:00:00:00:66") || !strings.Contains(err.Error(), "unicast") {
		t.Fatalf("err %v", err)
	}
	nothingChanged(t, fx)
}

func TestVMIDsAreClusterWide(t *testing.T) {
	fx := newDeployFixture(t)
	fx.f.AddVMOn("pve2", 102, map[string]string{"name": "ledger"}, true)
	_, err := fx.d.Deploy(context.Background(), fx.plan)
	if !errors.Is(err, ErrVMIDTaken) || !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("err %v, want ErrVMIDTaken", err)
	}
	for _, want := range []string{"VMID 102", "pve2", "ledger", "node w-2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	nothingChanged(t, fx)
}

func TestPrivilegesCheckedFirst(t *testing.T) {
	fx := newDeployFixture(t)
	for _, nd := range Needs(fx.plan) {
		t.Run(nd.Path+" "+nd.Privs[0], func(t *testing.T) {
			fx := newDeployFixture(t)
			for _, p := range nd.Privs {
				fx.f.Deny(nd.Path, p)
			}
			_, err := fx.d.Deploy(context.Background(), fx.plan)
			if !errors.Is(err, ErrPrivileges) || !errors.Is(err, errdefs.ErrPermission) {
				t.Fatalf("err %v, want ErrPrivileges", err)
			}
			if !strings.Contains(err.Error(), nd.Privs[0]+" ") || !strings.Contains(err.Error(), "on "+nd.Path) {
				t.Errorf("%q does not name %s on %s", err, nd.Privs[0], nd.Path)
			}
			nothingChanged(t, fx)
		})
	}
	// The stand-in refuses each of them on its own, 403: the list is not
	// longer than what the server checks.
	if _, err := fx.d.Deploy(context.Background(), fx.plan); err != nil {
		t.Fatal(err)
	}
}

func TestFailedCleanupNamesTheVolume(t *testing.T) {
	fx := newDeployFixture(t)
	fx.f.FailTasks = map[string]string{"imgdel": "unable to remove volume: device busy"}
	_, err := fx.d.Deploy(context.Background(), fx.plan)
	if !errors.Is(err, ErrLeftBehind) {
		t.Fatalf("err %v, want ErrLeftBehind", err)
	}
	for _, want := range []string{"local:import/kubedos-tpm-master-100.raw", "device busy", "Datastore.Allocate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestStaleTPMImportSwept(t *testing.T) {
	fx := newDeployFixture(t)
	ctx := context.Background()
	// An earlier deploy was killed between the TPM upload and its delete.
	p := filepath.Join(t.TempDir(), "seed.raw")
	if err := os.WriteFile(p, []byte("old seeds"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, _ := fileSHA256(p)
	volid, err := fx.d.C.Upload(ctx, "local", "kubedos-tpm-w-1-101.raw", p, sum)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
		t.Fatal(err)
	}
	if _, ok := fx.f.Volume(volid); ok {
		t.Errorf("%s still there", volid)
	}
	if got := fx.f.CallsMatching("DELETE /nodes/pve1/storage/local/content/local:import%2Fkubedos-tpm-w-1-101.raw"); len(got) != 2 {
		t.Errorf("%d deletes of w-1's TPM import, want the stale one and the new one", len(got))
	}
}
