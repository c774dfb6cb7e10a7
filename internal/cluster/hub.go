package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/pidfile"
)

// HubSpec is what a local hub serves with.
type HubSpec struct {
	SpecPath, BuildDir, KeysDir string
	// StateDir holds hub.db (and the runner's own files).
	StateDir string
	Listen   string
}

// HubRunner runs a local cluster's hub so that it keeps serving after the
// call that started it returns: the CLI's `cluster up` exits and leaves
// the cluster running, and `cluster down` stops it later.
type HubRunner interface {
	// Start starts the hub; it may return before the hub listens.
	Start(ctx context.Context, h HubSpec) error
	// Alive reports whether the hub of stateDir runs.
	Alive(stateDir string) bool
	// Stop stops the hub of stateDir; one not running is not an error.
	Stop(stateDir string) error
}

// DetachedHub runs the hub as `Exe hub serve …` (a kubedos binary) in a
// session of its own, so it outlives the process that started it; its pid
// and log are kept in the state directory. This is the one process the
// cluster library spawns for the hub: a hub that must outlive its caller
// cannot be a goroutine of it.
type DetachedHub struct{ Exe string }

const (
	hubPidFile  = "hub.pid"
	hubAddrFile = "hub.addr"
	hubLogFile  = "hub.log"
)

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Start spawns the hub.
func (d DetachedHub) Start(_ context.Context, h HubSpec) error {
	if d.Exe == "" {
		return errors.New("no kubedos executable to run the hub with")
	}
	log, err := os.OpenFile(filepath.Join(h.StateDir, hubLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	// Not CommandContext: the hub must outlive this call and this process.
	cmd := exec.Command(d.Exe, "hub", "serve", abs(h.SpecPath), "--build", abs(h.BuildDir), "--keys", abs(h.KeysDir),
		"--state", abs(h.StateDir), "--listen", h.Listen)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hub: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return durable.WriteFile(filepath.Join(h.StateDir, hubPidFile), []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

// Alive reads the pid file.
func (DetachedHub) Alive(stateDir string) bool {
	_, ok := pidfile.Alive(filepath.Join(stateDir, hubPidFile))
	return ok
}

// Stop ends the hub and removes its pid file.
func (DetachedHub) Stop(stateDir string) error {
	return pidfile.Stop(filepath.Join(stateDir, hubPidFile), 5*time.Second)
}

// runningHubAddr is the address of the hub running from this host, if any.
func (c *Cluster) runningHubAddr() (string, bool) {
	addr, err := os.ReadFile(filepath.Join(c.HubDir(), hubAddrFile))
	if err != nil || !c.hubRunner().Alive(c.HubDir()) {
		return "", false
	}
	return strings.TrimSpace(string(addr)), true
}

// startHub starts the hub on listen (the LAN gateway, so the nodes and
// this host reach it), unless it runs, and waits until it accepts
// connections.
func (c *Cluster) startHub(ctx context.Context, listen string) error {
	if addr, ok := c.runningHubAddr(); ok {
		c.hubAddr = addr
		c.ev.emit(HubStarted{Addr: addr, Already: true})
		return nil
	}
	if err := os.MkdirAll(c.HubDir(), 0o700); err != nil {
		return err
	}
	c.hubAddr = listen
	r := c.hubRunner()
	if err := r.Start(ctx, HubSpec{SpecPath: c.SpecPath, BuildDir: c.BuildDir, KeysDir: c.keysDir(), StateDir: c.HubDir(), Listen: listen}); err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(c.HubDir(), hubAddrFile), []byte(c.hubAddr+"\n"), 0o600); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("tcp", c.hubAddr); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) || !r.Alive(c.HubDir()) {
			return fmt.Errorf("hub did not start; see %s", filepath.Join(c.HubDir(), hubLogFile))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.ev.emit(HubStarted{Addr: c.hubAddr, StateDir: c.HubDir()})
	return nil
}

// HandoffFile records, in the hub's directory, that the master keeps the
// hub: from then on no hub runs on this host for the cluster.
const HandoffFile = "handoff.json"

// Handoff is what HandoffFile holds.
type Handoff struct {
	Node      string    `json:"node"`
	Addr      string    `json:"addr"`
	At        time.Time `json:"at"`
	AuditSeq  uint64    `json:"auditSeq"`
	AuditHead string    `json:"auditHead"`
}

// ReadHandoff reads the handoff record in a hub state directory; nil if
// the hub there was never handed over.
func ReadHandoff(dir string) (*Handoff, error) {
	b, err := os.ReadFile(filepath.Join(dir, HandoffFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h Handoff
	if err := json.Unmarshal(b, &h); err != nil || h.Node == "" || h.Addr == "" {
		return nil, fmt.Errorf("%s: not a handoff record", filepath.Join(dir, HandoffFile))
	}
	return &h, nil
}

func (c *Cluster) readHandoff() (*Handoff, error) { return ReadHandoff(c.HubDir()) }

// FindHub says where the cluster's hub answers: the master keeping it
// (handed over), or the hub running from this host. where says what was
// looked at, for an error when nothing answers.
func (c *Cluster) FindHub() (addr, keeper, where string, err error) {
	h, err := c.readHandoff()
	if err != nil {
		return "", "", "", err
	}
	if h != nil {
		c.hubAddr, c.hubKeeper = h.Addr, h.Node
		return h.Addr, h.Node, filepath.Join(c.HubDir(), HandoffFile), nil
	}
	where = filepath.Join(c.HubDir(), hubAddrFile) + " and " + filepath.Join(c.HubDir(), hubPidFile)
	if a, ok := c.runningHubAddr(); ok {
		c.hubAddr = a
		return a, "", where, nil
	}
	return "", "", where, nil
}

// HubFromState finds the cluster's hub in its state directory: the master
// that keeps it after a handover, else the hub cluster up runs here.
func HubFromState(dir string) (string, error) {
	hubDir := filepath.Join(dir, "hub")
	h, err := ReadHandoff(hubDir)
	if err != nil {
		return "", err
	}
	if h != nil {
		return h.Addr, nil
	}
	if b, err := os.ReadFile(filepath.Join(hubDir, hubAddrFile)); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	return "", fmt.Errorf("no hub: give --hub (or KUBEDOS_HUB); %s names none", hubDir)
}
