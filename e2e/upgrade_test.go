//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
)

// nodeBinaries builds kubedosd and kubedos-init into work/name with extra
// link flags: a different kubedosd makes a different build of the same spec.
func nodeBinaries(t *testing.T, name, ldflags string) string {
	t.Helper()
	dir := filepath.Join(work, name)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-buildid= -s -w "+ldflags, "-o", dir+"/",
		"../cmd/kubedosd", "../cmd/kubedos-init", "../cmd/kubedos-probe") // the probe: a Kubernetes build needs it beside kubedosd
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build node binaries %s: %v\n%s", name, err, out)
	}
	return dir
}

func buildWith(t *testing.T, dir, binaries string) (string, string) {
	t.Helper()
	b := strings.TrimSpace(lastLines(must(t, dir, "build", "cluster.yaml", "--cache", "cache", "--out", "out", "--node-binaries", binaries), 1))
	if !filepath.IsAbs(b) {
		b = filepath.Join(dir, b)
	}
	m, _, err := manifest.Read(filepath.Join(b, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	return b, m.Roles["master"].RoleID
}

// TestUpgradeRollbackPowerCut drives the A/B machinery on a real node under
// enforced Secure Boot: upgrade A→B; a payload with one changed byte refused
// before anything is written; rollback to A; an upgrade to a build whose
// kubedosd fails its boot check rolls back by itself; the VM killed while the
// idle slot is being written boots the old slot and works. The data
// partition's identifier never changes.
func TestUpgradeRollbackPowerCut(t *testing.T) {
	dir, buildA := makeSite(t, "upgrade", "testdata/one.yaml", "e2e", "cache", "out")
	idA := func() string {
		m, _, err := manifest.Read(filepath.Join(buildA, manifest.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		return m.Roles["master"].RoleID
	}()
	buildB, idB := buildWith(t, dir, nodeBinaries(t, "bin-b", "-X github.com/kubedos/kubedos/internal/buildinfo.Version=e2e-b"))
	buildBad, idBad := buildWith(t, dir, nodeBinaries(t, "bin-bad", "-X github.com/kubedos/kubedos/internal/agent.bootCheckFault=e2e-drill"))
	if idA == idB || idB == idBad || idA == idBad {
		t.Fatalf("builds are not distinct: %s %s %s", idA, idB, idBad)
	}
	t.Cleanup(func() { run(t, dir, nil, "cluster", "down", "cluster.yaml", "--purge") })
	must(t, dir, "cluster", "up", "cluster.yaml", "--build", buildA, "--keys", "keys", "--timeout", "10m")
	state := filepath.Join(dir, ".kubedos", "clusters", "e2e")
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(state, p))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	hub, nodeAPI := read("hub/hub.addr"), read("nodes/master/api.addr")
	version := func(wait time.Duration) api.NodeVersion {
		t.Helper()
		var v api.NodeVersion
		for deadline := time.Now().Add(wait); ; time.Sleep(3 * time.Second) {
			r := run(t, dir, nil, "node", "version", "--node", nodeAPI, "--name", "master", "--keys", "keys", "-o", "json")
			if r.code == 0 && json.Unmarshal([]byte(r.stdout), &v) == nil && v.Boot != nil && !v.Boot.Trial {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("node API not settled within %s: %s", wait, r.stderr)
			}
		}
	}
	v := version(3 * time.Minute)
	dataID := v.DataID
	if v.BuildID != idA || v.Slot != "a" || dataID == "" {
		t.Fatalf("before: build %s slot %s data %q; want %s a", v.BuildID, v.Slot, dataID, idA)
	}
	upgrade := func(b string, extra ...string) result {
		return run(t, dir, nil, append([]string{"node", "upgrade", "master", "--build", b, "--hub", hub, "--node", nodeAPI, "--keys", "keys", "-o", "json"}, extra...)...)
	}
	checkData := func(when string) {
		t.Helper()
		if got := version(5 * time.Minute).DataID; got != dataID {
			t.Errorf("%s: data partition identifier %q, was %q: data did not survive", when, got, dataID)
		}
	}

	// 1. A → B.
	start := time.Now()
	r := upgrade(buildB)
	t.Logf("FIGURE upgrade A→B (stream, check, write, reboot, re-attest, bless): %.0fs", time.Since(start).Seconds())
	if r.code != 0 || !strings.Contains(r.stdout, `"result": "upgraded"`) {
		t.Fatalf("upgrade to B: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var phases struct {
		WriteSeconds, SettleSeconds float64
		Written                     struct{ Steps []string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &phases); err != nil || phases.WriteSeconds <= 0 || phases.SettleSeconds <= 0 ||
		len(phases.Written.Steps) < 3 || !strings.HasPrefix(phases.Written.Steps[0], "receive and spool") {
		t.Errorf("upgrade to B: phases not reported (%v): %s", err, r.stdout)
	}
	t.Logf("FIGURE upgrade A→B phases: write %.0fs (%s), reboot to settled %.0fs", phases.WriteSeconds,
		strings.Join(phases.Written.Steps, "; "), phases.SettleSeconds)
	v = version(5 * time.Minute)
	if v.BuildID != idB || v.Slot != "b" || v.Boot.OtherSlot != idA {
		t.Errorf("after upgrade: build %s slot %s other %s; want %s b %s", v.BuildID, v.Slot, v.Boot.OtherSlot, idB, idA)
	}
	checkData("after A→B")
	// Again to B: the node is settled on it, so nothing is written or rebooted.
	if r := upgrade(buildB); r.code != 0 || !strings.Contains(r.stdout, `"result": "current"`) {
		t.Errorf("second upgrade to B: exit %d, want result current\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if v := version(time.Minute); v.BuildID != idB || v.Slot != "b" || v.Boot.OtherSlot != idA {
		t.Errorf("after a second upgrade to B: build %s slot %s other %s; want %s b %s", v.BuildID, v.Slot, v.Boot.OtherSlot, idB, idA)
	}

	// 2. One changed byte in the payload: refused before anything is written
	// (the entry of the idle slot, the first thing an install retires, is still there).
	tampered := filepath.Join(dir, "tampered")
	if out, err := exec.Command("cp", "-a", buildA, tampered).CombinedOutput(); err != nil {
		t.Fatalf("copy build: %v %s", err, out)
	}
	root := filepath.Join(tampered, "roles", "master", build.FileRoot)
	f, err := os.OpenFile(root, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := []byte{0}
	_, _ = f.ReadAt(one, 4<<20)
	one[0] ^= 0x20
	_, _ = f.WriteAt(one, 4<<20)
	f.Close()
	r = upgrade(tampered)
	if r.code == 0 || !strings.Contains(r.stderr, "root.squashfs: sha256") || !strings.Contains(r.stderr, "FailedPrecondition") {
		t.Errorf("tampered payload: exit %d\n%s", r.code, r.stderr)
	}
	if v = version(time.Minute); v.BuildID != idB || v.Boot.OtherSlot != idA {
		t.Errorf("after a refused payload: build %s other slot %q; want %s %s untouched", v.BuildID, v.Boot.OtherSlot, idB, idA)
	}

	// 3. Rollback flips to slot a.
	must(t, dir, "node", "rollback", "--node", nodeAPI, "--name", "master", "--keys", "keys")
	time.Sleep(10 * time.Second)
	if v = version(5 * time.Minute); v.BuildID != idA || v.Slot != "a" {
		t.Errorf("after rollback: build %s slot %s; want %s a", v.BuildID, v.Slot, idA)
	}
	checkData("after rollback")

	// 4. A build whose kubedosd fails its boot check comes back by itself.
	start = time.Now()
	r = upgrade(buildBad)
	rollbackSeconds := time.Since(start).Seconds()
	if r.code == 0 || !strings.Contains(r.stdout, `"result": "rolled-back"`) {
		t.Fatalf("upgrade to the failing build: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	v = version(time.Minute)
	if v.BuildID != idA || len(v.Boot.RolledBack) != 1 || v.Boot.RolledBack[0] != idBad || !strings.Contains(v.Boot.LastCheck, "e2e-drill") {
		t.Errorf("after the automatic rollback: build %s, rolled back %v, last check %q", v.BuildID, v.Boot.RolledBack, v.Boot.LastCheck)
	}
	checkData("after the automatic rollback")
	t.Logf("FIGURE upgrade to a failing build and automatic rollback: %.0fs", rollbackSeconds)

	// 5. Power cut while the idle slot is written: the old slot boots.
	serial := filepath.Join(state, "nodes", "master", "serial.log")
	before, _ := os.ReadFile(serial)
	up := exec.Command(filepath.Join(bin, "kubedos"), "node", "upgrade", "master", "--build", buildB, "--hub", hub, "--node", nodeAPI,
		"--keys", "keys", "--no-reboot")
	up.Dir = dir
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	var cut bool
	for deadline := time.Now().Add(4 * time.Minute); !cut && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(serial)
		if len(b) > len(before) && strings.Contains(string(b[len(before):]), "upgrade to "+idB+": write root-") {
			var st struct{ Nodes []struct{ PID int } }
			if err := json.Unmarshal([]byte(must(t, dir, "cluster", "status", "cluster.yaml", "--keys", "keys", "-o", "json")), &st); err != nil || st.Nodes[0].PID == 0 {
				t.Fatalf("no VM pid: %v", err)
			}
			_ = syscall.Kill(st.Nodes[0].PID, syscall.SIGKILL)
			cut = true
		}
	}
	if !cut {
		_ = up.Process.Kill()
		_ = up.Wait()
		t.Fatal("never saw the node start writing the idle slot")
	}
	// The client must notice the dead node by itself (keepalive), not hang.
	waited := make(chan error, 1)
	go func() { waited <- up.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Error("node upgrade exited 0 although the node died mid-write")
		}
	case <-time.After(3 * time.Minute):
		_ = up.Process.Kill()
		<-waited
		t.Error("node upgrade still waited for a dead node after 3 minutes")
	}
	must(t, dir, "cluster", "up", "cluster.yaml", "--build", buildA, "--keys", "keys", "--timeout", "10m")
	if v = version(5 * time.Minute); v.BuildID != idA || v.Slot != "a" {
		t.Errorf("after the power cut: build %s slot %s; want %s a", v.BuildID, v.Slot, idA)
	}
	// Healthy once systemd has finished starting.
	var healthy bool
	for deadline := time.Now().Add(3 * time.Minute); !healthy && time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		healthy = run(t, dir, nil, "node", "health", "--node", nodeAPI, "--name", "master", "--keys", "keys").code == 0
	}
	if !healthy {
		t.Error("the node is not healthy after the power cut")
	}
	checkData("after the power cut")
	audit := must(t, dir, "audit", "--hub", hub, "--keys", "keys")
	if !strings.Contains(audit, "node.upgrade") {
		t.Errorf("the hub's audit log has no node.upgrade entry:\n%s", lastLines(audit, 20))
	}
}
