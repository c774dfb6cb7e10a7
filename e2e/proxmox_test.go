//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// TestProxmoxDeploy: `kubedos deploy --target proxmox --hub-on master` of
// the real build against proxmoxtest (no Proxmox VE server runs here: the
// fake refuses what the real server refuses) serves the hub on this host,
// uploads the image and variable store, makes the node's TPM and registers
// its EK with that hub (registered EKs only), and makes and starts the VM.
// Meanwhile the test plays Proxmox VE: the VM is rebuilt on this machine
// from exactly what the fake holds — the imported disk, EFI variables and
// TPM state, SMBIOS type 1 from smbios1, the NIC's MAC — and boots under
// enforced Secure Boot, finds its name, hub and address in the SMBIOS SKU
// (no OEM strings, as on Proxmox VE), and enrolls; the deploy then hands
// the hub to it, as cluster up does on qemu: the master serves it, the
// host's hub is gone, cluster status says so. A second deploy changes
// nothing.
func TestProxmoxDeploy(t *testing.T) {
	c := manufacture(t)
	pve := proxmoxtest.New("pve1", pveToken)
	t.Cleanup(pve.Close) // after the cluster down below: cleanups run last in, first out

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
	state := filepath.Join(dir, "state")
	t.Cleanup(func() {
		// Whatever the test reached: no hub of this deploy left on the host.
		run(t, c.dir, nil, "cluster", "down", "pve.yaml", "--target", "proxmox", "--state", state)
	})

	deploy := func() []proxmox.Result {
		t.Helper()
		out := must(t, c.dir, "deploy", "pve.yaml", "--build", c.buildDir, "--keys", "keys",
			"--state", state, "--timeout", "0", "-o", "json")
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

	// The deploy serves the hub on this host (the LAN gateway), makes the
	// VM on the stand-in, waits for the master to enroll and hands the hub
	// to it, as cluster up does on qemu. It runs while this test plays
	// Proxmox VE's part: booting the VM the stand-in holds.
	type deployed struct {
		result
		err error
	}
	done := make(chan deployed, 1)
	start := time.Now()
	go func() {
		r, err := runKubedos(ctx, c.dir, nil, "deploy", "pve.yaml", "--build", c.buildDir, "--keys", "keys",
			"--hub", hubAddr, "--hub-on", "master", "--state", state, "--timeout", "10m", "-o", "json")
		done <- deployed{r, err}
	}()
	var vm proxmoxtest.VM
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		var ok bool
		if vm, ok = pve.VM(100); ok && vm.Running {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("deploy ended before the VM ran: exit %d, %v\n%s%s", r.code, r.err, r.stdout, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the deploy made no running VM 100 on the stand-in")
		}
	}
	t.Logf("FIGURE kubedos deploy --target proxmox of one node up to the VM started (hub started here, TPM made, EK registered, image and vars uploaded, VM made and started; API stand-in on loopback): %s", time.Since(start).Round(100*time.Millisecond))
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
	bootStart := time.Now()
	re := regexp.MustCompile(regexp.QuoteMeta(agent.EnrolledLinePrefix) + `.*|` + regexp.QuoteMeta(agent.RefusedLinePrefix) + `.*`)
	m, console := waitConsole(t, booted, ctx, "pve-100", re)
	if m == nil || !strings.HasPrefix(m[0], agent.EnrolledLinePrefix) {
		t.Fatalf("the VM made from the deploy did not enroll: %q", m)
	}
	t.Logf("FIGURE power-on to enrolled of the VM rebuilt from the Proxmox deploy: %s", time.Since(bootStart).Round(time.Second))
	if !strings.Contains(console, "LAN address 10.30.0.10/24 (SMBIOS)") {
		t.Errorf("kubedos-init did not take the LAN address from the SMBIOS SKU:\n%s", lastLines(console, 30))
	}
	var r deployed
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the deploy did not end within 5 minutes of the master enrolling")
	}
	if r.err != nil || r.code != 0 {
		t.Fatalf("deploy --hub-on master: exit %d, %v\n%s%s", r.code, r.err, r.stdout, r.stderr)
	}
	t.Logf("deploy --hub-on master:\n%s", lastLines(r.stderr, 20))
	t.Logf("FIGURE kubedos deploy --target proxmox --hub-on master, start to the hub handed over: %s", time.Since(start).Round(time.Second))
	var res []proxmox.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res) != 1 {
		t.Fatalf("deploy output %q: %v", r.stdout, err)
	}
	if res[0].Name != "master" || res[0].VMID != 100 || res[0].Action != proxmox.ActionCreated || len(res[0].EKHash) != 64 {
		t.Fatalf("deploy: %+v", res[0])
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
	if left, _ := filepath.Glob(filepath.Join(state, "proxmox", "tpm-*")); len(left) > 0 {
		t.Errorf("TPM state left on this machine: %v", left)
	}

	// The hub is the master's now: it serves on its LAN address, the
	// host's hub is gone, and the takeover follows the master's
	// enrollment, with its EK the one the deploy registered, in the one
	// audit chain.
	masterHub := "10.30.0.10:7443"
	n := nodeJSON(t, c, masterHub, "master")
	if n.State != "enrolled" || n.BuildID != c.manifest.Roles["master"].RoleID || n.EKHash != res[0].EKHash {
		t.Fatalf("the master's hub says %+v (deploy registered EK %s)", n, res[0].EKHash)
	}
	if out, _ := exec.Command("pgrep", "-af", "hub serve.*"+state).Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("a hub still runs on the host after the hand-over:\n%s", out)
	}
	var audit struct {
		ChainOK bool
		Entries []struct {
			Seq                            uint64
			Action, Target, Outcome, Actor string
		}
	}
	if err := json.Unmarshal([]byte(must(t, c.dir, "audit", "--hub", masterHub, "--keys", "keys", "-o", "json")), &audit); err != nil {
		t.Fatal(err)
	}
	var enrolledAt, takeoverAt uint64
	for _, e := range audit.Entries {
		switch {
		case e.Action == "enroll" && e.Target == "master" && e.Outcome == "ok":
			enrolledAt = e.Seq
		case e.Action == "hub.takeover" && e.Target == "master" && e.Outcome == "ok":
			takeoverAt = e.Seq
		}
	}
	if !audit.ChainOK || enrolledAt == 0 || takeoverAt <= enrolledAt {
		t.Errorf("audit on the master's hub: chain ok %v, master enrolled at %d, took the hub over at %d", audit.ChainOK, enrolledAt, takeoverAt)
	}
	var st struct {
		Hub, HubOn string
		Nodes      []struct{ Name, State, VM string }
	}
	if err := json.Unmarshal([]byte(must(t, c.dir, "cluster", "status", "pve.yaml", "--target", "proxmox", "--state", state, "--keys", "keys", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Hub != masterHub || st.HubOn != "master" || len(st.Nodes) != 1 || st.Nodes[0].State != "enrolled" || st.Nodes[0].VM != "running" {
		t.Errorf("cluster status after the hand-over: %+v", st)
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
