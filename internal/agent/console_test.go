package agent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/nodeconsole"
	"github.com/kubedos/kubedos/internal/nodeid"
	"github.com/kubedos/kubedos/internal/wg"
)

// consoleAgent is an agent as the console sees it: a role file, a fake
// journal, no TPM.
func consoleAgent(t *testing.T, journal LogReader) *Agent {
	t.Helper()
	role := filepath.Join(t.TempDir(), "role")
	if err := os.WriteFile(role, []byte("worker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return New(Config{RoleFile: role, Journal: journal, Clock: SystemClock{}, MinBackoff: time.Second, MaxBackoff: time.Second, Logf: t.Logf})
}

// screenText renders s at 80×24 as the console would.
func screenText(s nodeconsole.Snapshot) string {
	var b strings.Builder
	for _, l := range nodeconsole.Render(s, 80, 24) {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

func TestConsoleSnapshotOfAnEnrolledNode(t *testing.T) {
	joined, handshake := time.Now().Add(-4*time.Second), time.Now().Add(-90*time.Second)
	ifc := wg.Interface{Plane: "control", Name: "kd-ctl", Address: "10.90.0.21/16", Peers: []wg.Peer{{Name: "master-1"}}}
	env := newNodeEnv(t, func(c *NodeAPIConfig) {
		c.Planes = fixedPlanes{ifcs: []wg.Interface{ifc}, joined: joined}
		c.ReadPlane = func(i wg.Interface) wg.Status {
			return wg.Status{Plane: string(i.Plane), Interface: i.Name, Up: true, Addresses: []string{i.Address},
				Peers: []wg.PeerStatus{{Name: "master-1", LatestHandshake: handshake}}}
		}
	})
	env.sys.with(func() {
		env.sys.journal = []api.LogEntry{{Time: time.Now(), Message: "kubedosd: planes: kd-ctl joined"}}
	})
	a := consoleAgent(t, env.sys)
	a.view.update(func(v *nodeView) {
		v.name, v.api = "w-1", env.api
		v.enroll = &EnrollConfig{Hub: "10.20.0.10:7443", StateDir: env.idDir}
	})
	s := a.consoleSnapshot(context.Background(), Status{Build: "b-0011", Slot: "a", SecureBoot: "enabled"})
	if s.Enrollment != "enrolled" || s.Reason != "" || s.Day0 || !s.Healthy {
		t.Errorf("snapshot: enrollment %q (%q), day0 %v, healthy %v: %+v", s.Enrollment, s.Reason, s.Day0, s.Healthy, s.Checks)
	}
	want := joined
	if fetched, _ := env.revs.Fetched(); fetched.After(want) {
		want = fetched
	}
	if !s.HubAnswered.Equal(want) {
		t.Errorf("hub answered at %v, want %v: the later of the planes' join and the revocation fetch", s.HubAnswered, want)
	}
	if len(env.sys.journalQueries()) != 1 || env.sys.journalQueries()[0].Unit != "kubedosd.service" {
		t.Errorf("journal queries: %+v", env.sys.journalQueries())
	}
	// The next frame, 2 s later, runs no tool; a change in the agent does.
	a.consoleSnapshot(context.Background(), Status{})
	if n := len(env.sys.journalQueries()); n != 1 {
		t.Errorf("the journal was read %d times for two frames in %s", n, slowEvery)
	}
	// A change in the agent refreshes health at once, the journal only
	// when kubedosd wrote a line since (or a minute later).
	a.view.update(func(v *nodeView) {})
	a.consoleSnapshot(context.Background(), Status{})
	if n := len(env.sys.journalQueries()); n != 1 {
		t.Errorf("the journal was read %d times after a change with no line logged, want 1", n)
	}
	consoleLines.Add(1)
	a.view.update(func(v *nodeView) {})
	a.consoleSnapshot(context.Background(), Status{})
	if n := len(env.sys.journalQueries()); n != 2 {
		t.Errorf("the journal was read %d times after a line was logged, want 2", n)
	}
	last := a.view.slow
	a.gatherSlow(context.Background(), nil, last.at.Add(journalEvery-time.Second), last)
	if n := len(env.sys.journalQueries()); n != 2 {
		t.Errorf("the journal was read %d times within a minute with no line logged, want 2", n)
	}
	a.gatherSlow(context.Background(), nil, last.at.Add(journalEvery), last)
	if n := len(env.sys.journalQueries()); n != 3 {
		t.Errorf("the journal was read %d times a minute later, want 3", n)
	}
	screen := screenText(s)
	for _, want := range []string{"kubedos node w-1 (worker)", "Build b-0011  slot a  Secure", "Secure Boot enabled", "Enrollment  enrolled",
		"Hub         10.20.0.10:7443, answered", "kd-ctl   10.90.0.21/16 up  master-1 1m", "Health: healthy",
		"ok: enrolled, certificate, tpm, systemd, failed-units, revocations, planes", "kubedosd: planes: kd-ctl joined"} {
		if !strings.Contains(screen, want) {
			t.Errorf("%q is not on the screen:\n%s", want, screen)
		}
	}
}

func TestConsoleSnapshotQuarantined(t *testing.T) {
	a := consoleAgent(t, nil)
	reason := "hub: PCR 7 \x1b[2J does not match " + strings.Repeat("x", 4000)
	a.view.update(func(v *nodeView) {
		v.name, v.enroll = "w-1", &EnrollConfig{Hub: "10.20.0.10:7443", StateDir: t.TempDir()}
		v.stopped = Fatal(errors.New(reason))
	})
	s := a.consoleSnapshot(context.Background(), Status{})
	if s.Enrollment != "quarantined" || !strings.HasPrefix(s.Reason, "hub: PCR 7") || len(s.Reason) > maxReason+len("…") {
		t.Fatalf("enrollment %q, reason of %d bytes %.40q", s.Enrollment, len(s.Reason), s.Reason)
	}
	if screen := screenText(s); !strings.Contains(screen, `hub says: hub: PCR 7 \x1b[2J does not match`) {
		t.Errorf("the reason is not on the screen, escaped:\n%s", screen)
	}
	a.view.update(func(v *nodeView) { v.stopped = errors.New("read cluster CA: no such file") })
	if s := a.consoleSnapshot(context.Background(), Status{}); s.Enrollment != "stopped" {
		t.Errorf("a local failure shows as %q", s.Enrollment)
	}
}

func TestBootTries(t *testing.T) {
	for _, tc := range []struct {
		bs   *api.BootState
		want string
	}{
		{nil, ""},
		{&api.BootState{Entry: "kubedos-3-0011aabb.efi"}, "blessed"},
		{&api.BootState{Entry: "kubedos-3-0011aabb+2-1.efi", Trial: true}, "trial, 2 tries left, 1 done"},
		{&api.BootState{Error: "no ESP"}, "boot entries unreadable"},
		{&api.BootState{}, "no boot entry"},
	} {
		if got := bootTries(tc.bs); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.bs, got, tc.want)
		}
	}
}

// day0Files points the identity file, the LAN unit and SMBIOS at a
// temporary directory, and stubs the network reload.
func day0Files(t *testing.T) (identity, lan string) {
	t.Helper()
	dir := t.TempDir()
	oldID, oldLAN, oldOEM, oldSys, oldReload := earlyboot.IdentityFile, earlyboot.LANNetworkFile, earlyboot.OEMStringsGlob, earlyboot.SystemInfoGlob, reloadNetwork
	earlyboot.IdentityFile, earlyboot.LANNetworkFile = filepath.Join(dir, "state", "nodeid.conf"), filepath.Join(dir, "run", "10-lan.network")
	earlyboot.OEMStringsGlob, earlyboot.SystemInfoGlob = filepath.Join(dir, "none-11"), filepath.Join(dir, "none-1")
	reloadNetwork = func(context.Context) error { return nil }
	t.Cleanup(func() {
		earlyboot.IdentityFile, earlyboot.LANNetworkFile, earlyboot.OEMStringsGlob, earlyboot.SystemInfoGlob, reloadNetwork = oldID, oldLAN, oldOEM, oldSys, oldReload
	})
	return earlyboot.IdentityFile, earlyboot.LANNetworkFile
}

func TestDay0SetupThenEnrollment(t *testing.T) {
	idFile, lanFile := day0Files(t)
	a := consoleAgent(t, nil)
	a.cfg.OpenConsole = func() (nodeconsole.Terminal, bool, string, error) {
		return nil, false, "", errors.New("no terminal in tests")
	}
	a.cfg.CAFile = filepath.Join(t.TempDir(), "missing-ca.crt")
	id := nodeid.Identity{Name: "bm-1", Address: netip.MustParsePrefix("10.20.0.31/24"), Gateway: netip.MustParseAddr("10.20.0.1"), Hub: "10.20.0.10:7443"}

	// Before the identity controller says no hub is named, the console
	// writes nothing.
	if err := a.day0Setup(context.Background(), id); err == nil {
		t.Fatal("Day 0 saved while the node's identity was unknown")
	}
	if _, err := os.Stat(idFile); err == nil {
		t.Fatal("a refused Day 0 wrote the identity file")
	}

	done := make(chan error, 1)
	go func() { done <- a.runIdentity(context.Background(), Status{}) }()
	deadline := time.Now().Add(5 * time.Second)
	for a.consoleSnapshot(context.Background(), Status{}).Enrollment != "no hub named" {
		if time.Now().After(deadline) {
			t.Fatal("the identity controller never said no hub is named")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := a.consoleSnapshot(context.Background(), Status{}); !s.Day0 {
		t.Error("Day 0 is not offered on a node that names no hub")
	}
	if err := a.day0Setup(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	pairs := map[string]string{}
	if err := earlyboot.ReadIdentityFile(pairs, idFile); err != nil {
		t.Fatal(err)
	}
	if got, err := nodeid.Decode(pairs); err != nil || got != id {
		t.Errorf("identity file holds %+v (%v), want %+v", got, err, id)
	}
	if unit, err := os.ReadFile(lanFile); err != nil || !strings.Contains(string(unit), "Address=10.20.0.31/24") || !strings.Contains(string(unit), "Gateway=10.20.0.1") {
		t.Errorf("LAN unit: %q, %v", unit, err)
	}
	// The identity controller reads the new identity and goes on to
	// enroll: here it stops at the (missing) cluster CA.
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "read cluster CA") {
			t.Errorf("after Day 0 the identity controller returned %v, want it to go on to enrollment", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the identity controller did not go on after Day 0")
	}
	// Once a hub is named, Day 0 is over.
	a.view.update(func(v *nodeView) { v.standalone = false })
	if err := a.day0Setup(context.Background(), nodeid.Identity{Name: "evil", Address: id.Address, Hub: "10.6.6.6:7443"}); err == nil {
		t.Error("the console re-pointed a node that names a hub")
	}
}

// The console reads the boot entries (a mount of the ESP) once, then again
// only after this process tried to change them, or bootEvery later.
func TestConsoleReadsBootEntriesWhenWritten(t *testing.T) {
	var opens int
	slots := &Slots{OpenDisk: func() (*os.File, error) { opens++; return nil, errors.New("no disk in a test") }}
	env := newNodeEnv(t, func(c *NodeAPIConfig) { c.Slots = slots })
	a := consoleAgent(t, nil)
	t0 := time.Now()
	last := a.gatherSlow(context.Background(), env.api, t0, slowParts{})
	if opens != 1 {
		t.Fatalf("first frame: the boot disk was opened %d times, want 1", opens)
	}
	last = a.gatherSlow(context.Background(), env.api, t0.Add(bootEvery-time.Second), last)
	if opens != 1 {
		t.Errorf("nothing written: the boot disk was opened %d times before bootEvery, want 1", opens)
	}
	if _, err := slots.Bless(); err == nil {
		t.Fatal("bless without a disk succeeded")
	}
	opens = 1 // Bless opened it too
	last = a.gatherSlow(context.Background(), env.api, t0.Add(bootEvery-time.Second), last)
	if opens != 2 {
		t.Errorf("after a bless: the boot disk was opened %d times, want 2", opens)
	}
	last = a.gatherSlow(context.Background(), env.api, t0.Add(bootEvery-time.Second), last)
	if opens != 2 {
		t.Errorf("no write since: the boot disk was opened %d times, want 2", opens)
	}
	a.gatherSlow(context.Background(), env.api, last.bootAt.Add(bootEvery), last)
	if opens != 3 {
		t.Errorf("bootEvery later: the boot disk was opened %d times, want 3", opens)
	}
}
