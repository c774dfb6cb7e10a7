//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

const pveToken = "kubedos@pve!deploy=0c6d3f4e-5a1b-4c2d-9e8f-7a6b5c4d3e2f"

// TestProxmoxDeploy: `kubedos deploy --target proxmox` of the real build
// against proxmoxtest (no Proxmox VE server runs here: the fake follows its
// API's documented shapes) uploads the image and variable store, makes the
// node's TPM and registers its EK with a hub that accepts registered EKs
// only, and makes and starts the VM. Then the VM is rebuilt on this machine
// from exactly what the fake holds — the imported disk, EFI variables and
// TPM state, SMBIOS type 1 from smbios1, the NIC's MAC — and boots under
// enforced Secure Boot, finds its name, hub and address in the SMBIOS SKU
// (no OEM strings, as on Proxmox VE), and enrolls. A second deploy changes
// nothing.
func TestProxmoxDeploy(t *testing.T) {
	c := manufacture(t)
	pve := proxmoxtest.New("pve1", pveToken)
	defer pve.Close()

	dir := filepath.Join(work, "proxmox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(pveToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(filepath.Join(c.dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pveSpec := fmt.Sprintf("%s\ntargets:\n  default: proxmox\n  proxmox:\n    apiURL: %s\n    node: pve1\n    storage: local-lvm\n    importStorage: local\n    bridge: vmbr0\n    tokenFile: %s\n    fingerprint: \"%X\"\n",
		base, pve.URL(), tokenFile, pve.Fingerprint())
	if strings.Contains(string(base), "\ntargets:") {
		t.Fatal("the e2e spec sets targets already; merge instead of appending")
	}
	if err := os.WriteFile(filepath.Join(c.dir, "pve.yaml"), []byte(pveSpec), 0o644); err != nil {
		t.Fatal(err)
	}

	// The LAN as on a Proxmox bridge: the hub on its gateway, reached by
	// the node at its spec address.
	seg, err := qemu.NewSegment("e2epve", "10.30.0.0/24", "10.30.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := seg.Up(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = seg.Down(context.Background()) }()
	hubAddr := "10.30.0.1:7443"
	serveHub(t, c, hubAddr, filepath.Join(dir, "hub")) // no --ek-ca: registered EKs only

	deploy := func() []proxmox.Result {
		t.Helper()
		out := must(t, c.dir, "deploy", "pve.yaml", "--build", c.buildDir, "--keys", "keys", "--hub", hubAddr,
			"--state", filepath.Join(dir, "state"), "--timeout", "0", "-o", "json")
		var res []proxmox.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
			t.Fatalf("deploy output %q: %v", out, err)
		}
		return res
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{nil, "--hub is required"},
		// The hand-over waits for the master: no wait, no deploy.
		{[]string{"--hub", hubAddr, "--hub-on", "master"}, "give --timeout"},
		{[]string{"--hub", hubAddr, "--hub-on", "elsewhere"}, `--hub-on "elsewhere"`},
	} {
		args := append([]string{"deploy", "pve.yaml", "--build", c.buildDir, "--keys", "keys", "--timeout", "0"}, bad.args...)
		if r := run(t, c.dir, nil, args...); r.code == 0 || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("deploy %v: exit %d, %q; want a refusal saying %q", bad.args, r.code, r.stderr, bad.want)
		}
	}
	if _, ok := pve.VM(100); ok {
		t.Fatal("a refused deploy made a VM")
	}

	start := time.Now()
	res := deploy()
	t.Logf("FIGURE kubedos deploy --target proxmox of one node (TPM made, EK registered, image and vars uploaded, VM made and started; API stand-in on loopback): %s", time.Since(start).Round(100*time.Millisecond))
	if r := res[0]; r.Name != "master" || r.VMID != 100 || r.Action != proxmox.ActionCreated || len(r.EKHash) != 64 {
		t.Fatalf("deploy: %+v", r)
	}
	vm, ok := pve.VM(100)
	if !ok || !vm.Running {
		t.Fatalf("VM 100 on the fake: %+v", vm)
	}
	vols, err := proxmoxClient(t, pve).Volumes(ctx, "local", "import")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if strings.Contains(v.VolID, "tpm") {
			t.Errorf("TPM state left on the import storage: %s", v.VolID)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "state", "proxmox", "tpm-*")); len(left) > 0 {
		t.Errorf("TPM state left on this machine: %v", left)
	}

	// Rebuild the VM from what Proxmox VE would hold, and boot it.
	vmDir := filepath.Join(dir, "vm-100")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	volume := func(key, file string) string {
		b, ok := pve.Disk(vm.Config[key])
		if !ok || len(b) == 0 {
			t.Fatalf("%s = %q: no volume behind it", key, vm.Config[key])
		}
		p := filepath.Join(vmDir, file)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	disk, tpm := volume("virtio0", "disk.qcow2"), volume("tpmstate0", "tpm.raw")
	vars, _ := pve.Disk(vm.Config["efidisk0"])
	smbios := map[string]string{}
	for _, kv := range strings.Split(vm.Config["smbios1"], ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "uuid" && k != "base64" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				t.Fatalf("smbios1 %s: %v", k, err)
			}
			v = string(b)
		}
		smbios[k] = v
	}
	mac := regexp.MustCompile(`virtio=([0-9A-Fa-f:]{17})`).FindStringSubmatch(vm.Config["net0"])
	if mac == nil {
		t.Fatalf("net0 %q", vm.Config["net0"])
	}
	if err := seg.AddTap(ctx, "tappve100"); err != nil {
		t.Fatal(err)
	}
	booted, err := qemu.Start(ctx, qemu.VMConfig{Name: "pve-100", Dir: vmDir, Disk: disk, Vars: vars, MemoryMiB: 1024,
		TPMStateFile: tpm, UUID: smbios["uuid"], Serial: smbios["serial"], SKU: smbios["sku"],
		TAP: &qemu.TAP{Netns: seg.Netns, Name: "tappve100", MAC: mac[1]}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(booted.Stop)
	start = time.Now()
	re := regexp.MustCompile(regexp.QuoteMeta(agent.EnrolledLinePrefix) + `.*|` + regexp.QuoteMeta(agent.RefusedLinePrefix) + `.*`)
	m, console := waitConsole(t, booted, ctx, "pve-100", re)
	if m == nil || !strings.HasPrefix(m[0], agent.EnrolledLinePrefix) {
		t.Fatalf("the VM made from the deploy did not enroll: %q", m)
	}
	t.Logf("FIGURE power-on to enrolled of the VM rebuilt from the Proxmox deploy: %s", time.Since(start).Round(time.Second))
	if !strings.Contains(console, "LAN address 10.30.0.10/24 (SMBIOS)") {
		t.Errorf("kubedos-init did not take the LAN address from the SMBIOS SKU:\n%s", lastLines(console, 30))
	}
	n := nodeJSON(t, c, hubAddr, "master")
	if n.State != "enrolled" || n.BuildID != c.manifest.Roles["master"].RoleID {
		t.Fatalf("after boot the hub says %+v", n)
	}
	if n.EKHash != res[0].EKHash {
		t.Errorf("enrolled EK %s, deploy registered %s", n.EKHash, res[0].EKHash)
	}

	start = time.Now()
	if again := deploy(); again[0].Action != proxmox.ActionUnchanged {
		t.Errorf("second deploy: %+v", again[0])
	}
	t.Logf("FIGURE second deploy (nothing to do): %s", time.Since(start).Round(10*time.Millisecond))
}

func proxmoxClient(t *testing.T, pve *proxmoxtest.Fake) *proxmox.Client {
	t.Helper()
	c, err := proxmox.New(pve.URL(), "pve1", pveToken, pve.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	return c
}
