package cli

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
)

// proxmoxSpec writes examples/local.yaml deployed to the stand-in: its
// targets.proxmox names the stand-in's API, pinned certificate and a
// private token file.
func proxmoxSpec(t *testing.T, pve *proxmoxtest.Fake, token string, destroy bool) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(examples.Local), "targets:\n  default: qemu\n",
		"targets:\n  default: proxmox\n  proxmox:\n    apiURL: "+pve.URL()+"\n    node: pve1\n    storage: local-lvm\n    bridge: vmbr0\n"+
			"    tokenFile: "+tokenFile+"\n    fingerprint: "+hex.EncodeToString(pve.Fingerprint())+"\n", 1)
	if destroy {
		s = strings.Replace(s, "destroyVMs: false", "destroyVMs: true", 1)
	}
	if !strings.Contains(s, "default: proxmox") || destroy != strings.Contains(s, "destroyVMs: true") {
		t.Fatal("examples/local.yaml no longer has the targets and destructive sections this test rewrites")
	}
	p := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cluster down and status on proxmox, through the spec's own
// targets.proxmox: each node's VM in words and in JSON; the VMs are kept
// unless the spec opts in to destroying them.
func TestClusterDownStatusProxmox(t *testing.T) {
	const token = "root@pam!kubedos=00000000-0000-0000-0000-000000000000"
	pve := proxmoxtest.New("pve1", token)
	t.Cleanup(pve.Close)
	ours := func(node string) map[string]string {
		return map[string]string{"name": node, "agent": "1", "description": "kubedos: node " + node + " of cluster local, image id-1"}
	}
	pve.AddVM(100, ours("master"), true)
	pve.AddVM(101, ours("w-1"), false)
	pve.SetAgent(100, []proxmoxtest.Interface{{Name: "ens18", IPAddresses: []proxmoxtest.IPAddr{{Address: "10.20.0.10", Type: "ipv4", Prefix: 24}}}})
	keep := proxmoxSpec(t, pve, token, false)
	state := t.TempDir()
	keys := filepath.Join(t.TempDir(), "keys")
	if code, out, errs := run(t, "keys", "init", "--dir", keys, "--cluster", "local"); code != 0 {
		t.Fatalf("keys init: %s%s", out, errs)
	}

	code, out, errs := run(t, "cluster", "status", keep, "--state", state, "--keys", keys)
	if code != 0 {
		t.Fatalf("status: exit %d: %s%s", code, out, errs)
	}
	for _, want := range []string{"cluster local on proxmox: no hub known", "AGENT", "ADDRESSES",
		"master  master      100   running  up", "ens18 10.20.0.10/24", "w-1     worker      101   stopped  off", "w-2     worker      102   absent"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "LAN") {
		t.Errorf("status on proxmox speaks of a local LAN:\n%s", out)
	}

	code, out, errs = run(t, "cluster", "down", keep, "--state", state, "-o", "json")
	if code != 0 {
		t.Fatalf("down: exit %d: %s%s", code, out, errs)
	}
	var res []target.Ensured
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("down -o json: %v\n%s", err, out)
	}
	want := []target.Ensured{{Name: "master", VMID: 100, Action: target.ActionStopped}, {Name: "w-1", VMID: 101, Action: target.ActionStopped},
		{Name: "w-2", VMID: 102, Action: target.ActionAbsent}, {Name: "mon", VMID: 103, Action: target.ActionAbsent}}
	if len(res) != len(want) {
		t.Fatalf("down -o json: %+v, want %+v", res, want)
	}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("down -o json [%d]: %+v, want %+v", i, res[i], want[i])
		}
	}
	for _, id := range []int{100, 101} {
		if vm, ok := pve.VM(id); !ok || vm.Running {
			t.Errorf("VM %d after down: present %v running %v, want kept and stopped", id, ok, vm.Running)
		}
	}

	code, out, errs = run(t, "cluster", "down", proxmoxSpec(t, pve, token, true), "--state", state)
	if code != 0 {
		t.Fatalf("down with destroyVMs: exit %d: %s%s", code, out, errs)
	}
	for _, want := range []string{"master  100   destroyed", "w-1     101   destroyed", "w-2     102   absent", "0 VMs stopped, 2 destroyed, 2 absent"} {
		if !strings.Contains(out, want) {
			t.Errorf("down with destroyVMs does not say %q:\n%s", want, out)
		}
	}
	for _, id := range []int{100, 101} {
		if _, ok := pve.VM(id); ok {
			t.Errorf("VM %d is left after down with destroyVMs", id)
		}
	}
}
