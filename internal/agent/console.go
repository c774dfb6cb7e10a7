package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/buildinfo"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/nodeconsole"
	"github.com/kubedos/kubedos/internal/nodeid"
)

// OpenNodeConsole opens the terminal the node console takes over
// (nodeconsole.PickTTY: tty1 when a display shows it, else the serial
// console), says which, and whether it is the serial console (also the
// machine's log: the screen waits there for a key).
func OpenNodeConsole() (term nodeconsole.Terminal, serial bool, why string, err error) {
	path, why, err := nodeconsole.PickTTY("/sys", "/dev")
	if err != nil {
		return nil, false, "", err
	}
	t, err := nodeconsole.OpenTTY(path)
	if err != nil {
		return nil, false, "", err
	}
	return t, filepath.Base(path) != "tty1", why, nil
}

// maxReason bounds the hub's refusal kept for the console: it comes over
// the wire from whoever answers as the hub.
const maxReason = 1024

// consoleJournalLines is how much of kubedosd's journal the console asks
// for; it shows what fits.
const consoleJournalLines = 40

// nodeView is what the agent learns as it runs that the node console
// shows: it is filled in by the controllers (identity, the enrolled node's
// node API and planes) and read by the console's Snapshot. Safe for
// concurrent use.
type nodeView struct {
	changed     chan struct{} // a nudge to the console, never blocks the sender
	portChanged chan struct{} // the same to its copy on the virtio port
	day0        chan struct{} // the console saved a Day 0 identity

	mu         sync.Mutex
	name       string
	enroll     *EnrollConfig
	standalone bool // no hub named: the console offers Day 0
	stopped    error
	api        *NodeAPI

	ekHash  string
	ekErr   error
	ekTried time.Time

	slow  slowParts
	dirty bool // the state changed: gather the slow parts again
}

func newNodeView() *nodeView {
	return &nodeView{changed: make(chan struct{}, 1), portChanged: make(chan struct{}, 1), day0: make(chan struct{}, 1)}
}

// update changes the view under its lock and nudges the console.
func (v *nodeView) update(fn func(*nodeView)) {
	v.mu.Lock()
	fn(v)
	v.dirty = true
	v.mu.Unlock()
	for _, c := range []chan struct{}{v.changed, v.portChanged} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// ek is the EK's hash, read once from the TPM (again a minute after a
// failure): the hash an operator registers a machine with by hand.
func (v *nodeView) ek(open func() (*attest.Prover, error), now time.Time) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ekHash == "" && open != nil && (v.ekTried.IsZero() || now.Sub(v.ekTried) > time.Minute) {
		v.ekTried = now
		v.ekErr = func() error {
			p, err := open()
			if err != nil {
				return err
			}
			defer p.Close()
			pub, err := p.EKPublic()
			if err != nil {
				return err
			}
			v.ekHash = attest.EKHash(pub)
			return nil
		}()
	}
	if v.ekHash == "" && v.ekErr != nil {
		return "unreadable: " + v.ekErr.Error()
	}
	return v.ekHash
}

// consoleController is the node console under the supervisor: it opens
// the terminal each run, so a hung-up serial line is reopened after the
// backoff.
func (a *Agent) consoleController(st Status) Controller {
	return controllerFunc{"console", func(ctx context.Context) error {
		term, serial, why, err := a.cfg.OpenConsole()
		if err != nil {
			return err
		}
		a.cfg.Logf("node console on %s", why)
		host, _ := os.Hostname()
		return nodeconsole.Run(ctx, nodeconsole.Config{Term: term, Changed: a.view.changed, Hostname: host, WaitForKey: serial,
			Snapshot: func(ctx context.Context) nodeconsole.Snapshot { return a.consoleSnapshot(ctx, st) },
			Setup:    a.day0Setup})
	}}
}

// portWait is how long the console-port controller looks for its port:
// udev loads virtio_console while kubedosd starts.
const portWait = 2 * time.Minute

// consolePortController draws a read-only copy of the console on the
// hypervisor's virtio-serial port named nodeconsole.PortName, when there is
// one: what an e2e test reads, and what an operator can attach to without
// a display. No keys are read there: Day 0 is tty1's alone.
func (a *Agent) consolePortController(st Status) Controller {
	return controllerFunc{"console-port", func(ctx context.Context) error {
		var path string
		for start := a.cfg.Clock.Now(); ; {
			if path = a.cfg.ConsolePort(); path != "" {
				break
			}
			if a.cfg.Clock.Now().Sub(start) > portWait || !sleep(ctx, a.cfg.Clock, 5*time.Second) {
				return nil // no port: nothing to do
			}
		}
		port, err := nodeconsole.OpenPort(path)
		if err != nil {
			return err
		}
		a.cfg.Logf("node console copied to %s (%s)", path, nodeconsole.PortName)
		return nodeconsole.Run(ctx, nodeconsole.Config{Term: port, Changed: a.view.portChanged,
			Snapshot: func(ctx context.Context) nodeconsole.Snapshot { return a.consoleSnapshot(ctx, st) }})
	}}
}

// consoleSnapshot gathers the console's screen from what `node version`,
// `node health` and `node planes` answer once the node API runs, and from
// the supervisor's controllers before.
func (a *Agent) consoleSnapshot(ctx context.Context, st Status) nodeconsole.Snapshot {
	now := a.cfg.Clock.Now()
	v := a.view
	v.mu.Lock()
	name, enroll, standalone, stopped, srv := v.name, v.enroll, v.standalone, v.stopped, v.api
	v.mu.Unlock()
	s := nodeconsole.Snapshot{Now: now, Node: name, Build: st.Build, Slot: st.Slot, SecureBoot: st.SecureBoot,
		Kubedosd: buildinfo.Get().Version, EKHash: v.ek(a.cfg.OpenProver, now), Day0: standalone}
	if role, err := os.ReadFile(a.cfg.RoleFile); err == nil {
		s.Role = strings.TrimSpace(string(role))
	}
	if enroll != nil {
		s.Hub = enroll.HubAddr()
	}
	s.Enrollment, s.Reason = a.enrollmentState(enroll, standalone, stopped)

	slow := v.slowParts(now, func(last slowParts) slowParts { return a.gatherSlow(ctx, srv, now, last) })
	s.Boot, s.Checks, s.Healthy, s.Journal = slow.boot, slow.health.Checks, slow.health.Healthy, slow.journal
	if srv == nil {
		// The controllers, as `node health` lists them: cheap, and what
		// changes while a node enrolls.
		s.Healthy = true
		for _, c := range a.sup.Statuses() {
			hc := controllerCheck(c, now)
			s.Checks = append(s.Checks, hc)
			s.Healthy = s.Healthy && hc.OK
		}
	} else {
		s.HubAnswered = srv.fetchedAt()
		if p := srv.Planes(); p != nil {
			s.Planes, s.PlanesError = p.Interfaces, p.Error
			if p.Joined.After(s.HubAnswered) {
				s.HubAnswered = p.Joined
			}
		}
	}
	return s
}

// Refresh periods of what costs a tool run or a mount: health runs
// systemctl twice, the journal journalctl, the boot entries mount the ESP.
// A frame every 2 s must not do that every 2 s on a node; a change of the
// agent's state refreshes them at once. The boot entries change only by
// this process's upgrades, rollbacks and blesses once it runs (Slots.Writes),
// so they are read again after one of those, and otherwise every bootEvery
// as a backstop: a mount a minute on each of sixteen emulated nodes was
// CPU the convergence needed.
const (
	slowEvery    = 10 * time.Second
	bootEvery    = 10 * time.Minute
	journalEvery = time.Minute
)

// consoleLines counts the lines kubedosd wrote (Console): the node
// console reads kubedosd's journal again when it grew, and otherwise once
// every journalEvery (for what systemd itself logs of the unit), not at
// every refresh — journalctl every 10 s was most of an idle emulated
// node's tool runs.
var consoleLines atomic.Int64

// slowParts are the snapshot's costly parts, cached in the view.
type slowParts struct {
	at, bootAt time.Time
	boot       string
	// bootWrites is Slots.Writes when boot was read.
	bootWrites uint64
	health     api.Health
	journal    []api.LogEntry
	// journalAt is when journal was read, journalSeq consoleLines then.
	journalAt  time.Time
	journalSeq int64
}

// slowParts returns the cached parts, gathered again (from the last ones)
// when older than slowEvery or after a change (update).
func (v *nodeView) slowParts(now time.Time, gather func(last slowParts) slowParts) slowParts {
	v.mu.Lock()
	last, fresh := v.slow, !v.slow.at.IsZero() && now.Sub(v.slow.at) < slowEvery && !v.dirty
	v.mu.Unlock()
	if fresh {
		return last
	}
	got := gather(last)
	v.mu.Lock()
	v.slow, v.dirty = got, false
	v.mu.Unlock()
	return got
}

// gatherSlow runs the costly parts: `node health` and the boot entry's
// tries (at most every bootEvery) once the node API runs, and kubedosd's
// journal.
func (a *Agent) gatherSlow(ctx context.Context, srv *NodeAPI, now time.Time, last slowParts) slowParts {
	out := slowParts{at: now, boot: last.boot, bootAt: last.bootAt, bootWrites: last.bootWrites,
		journal: last.journal, journalAt: last.journalAt, journalSeq: last.journalSeq}
	if srv != nil {
		var writes uint64
		if srv.cfg.Slots != nil {
			writes = srv.cfg.Slots.Writes()
		}
		if last.bootAt.IsZero() || now.Sub(last.bootAt) >= bootEvery || writes != last.bootWrites {
			out.boot, out.bootAt, out.bootWrites = bootTries(srv.Version().Boot), now, writes
		}
		out.health = srv.CheckHealth(ctx)
	}
	seq := consoleLines.Load()
	fresh := !last.journalAt.IsZero() && now.Sub(last.journalAt) < journalEvery && seq == last.journalSeq
	if a.cfg.Journal != nil && !fresh {
		out.journalAt, out.journalSeq = now, seq
		if j, err := a.cfg.Journal.Journal(ctx, JournalQuery{Unit: "kubedosd.service", Lines: consoleJournalLines}); err == nil {
			out.journal = j
		} else {
			out.journal = []api.LogEntry{{Time: now, Message: "journal: " + err.Error()}}
		}
	}
	return out
}

// enrollmentState is the console's word for the node's identity and why.
func (a *Agent) enrollmentState(enroll *EnrollConfig, standalone bool, stopped error) (string, string) {
	switch {
	case stopped != nil && errors.As(stopped, new(fatalError)):
		return "quarantined", bound(stopped.Error(), maxReason)
	case stopped != nil:
		return "stopped", bound(stopped.Error(), maxReason)
	case standalone:
		return "no hub named", ""
	case enroll == nil:
		return "starting", ""
	}
	if _, err := os.Stat(filepath.Join(enroll.StateDir, NodeCertFile)); err == nil {
		return "enrolled", ""
	}
	for _, c := range a.sup.Statuses() {
		if c.Name == "enrollment" && c.LastError != "" {
			return "enrolling", bound(c.LastError, maxReason)
		}
	}
	return "enrolling", ""
}

// bootTries says how the running boot entry counts its tries.
func bootTries(bs *api.BootState) string {
	if bs == nil {
		return ""
	}
	if bs.Error != "" {
		return "boot entries unreadable"
	}
	e, ok := earlyboot.ParseBootEntry(bs.Entry)
	switch {
	case !ok:
		return "no boot entry"
	case !e.Counted:
		return "blessed"
	}
	return fmt.Sprintf("trial, %d tries left, %d done", e.Left, e.Done)
}

// bound cuts s to n bytes: what the hub says is stored and shown bounded.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// reloadNetwork has networkd read LANNetworkFile again (a variable: tests
// must not touch the host's network).
var reloadNetwork = func(ctx context.Context) error {
	_, err := run(ctx, "networkctl", "reload")
	return err
}

// day0Setup keeps the identity typed on the console of a node that named
// no hub: the identity file on the state partition (kubedos-init applies
// its LAN address at every later boot), the LAN address for this boot,
// then enrollment. It is the console's only write, and only while no hub
// is named: a console cannot point an enrolling or enrolled node at
// another hub.
func (a *Agent) day0Setup(ctx context.Context, id nodeid.Identity) error {
	a.view.mu.Lock()
	standalone := a.view.standalone
	a.view.mu.Unlock()
	if !standalone {
		return errors.New("this node already names a hub: Day 0 is over")
	}
	if err := earlyboot.WriteIdentityFile(earlyboot.IdentityFile, id); err != nil {
		return err
	}
	strs, _ := id.Strings()
	pairs := map[string]string{}
	nodeid.Pairs(pairs, strs...)
	if _, err := earlyboot.WriteLAN(pairs); err != nil {
		a.cfg.Logf("Day 0: LAN address: %v", err)
	} else if err := reloadNetwork(ctx); err != nil {
		a.cfg.Logf("Day 0: %v (the address applies at the next boot)", err)
	}
	a.cfg.Logf("Day 0: %s at %s with hub %s, set on the console (%s)", id.Name, id.Address, id.Hub, earlyboot.IdentityFile)
	select {
	case a.view.day0 <- struct{}{}:
	default:
	}
	return nil
}
