package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/durable"
)

// StatusJSON is where kubedosd leaves the boot status for local tools.
const StatusJSON = "/run/kubedos/status.json"

// Agent is kubedosd: its configuration and the supervisor of its
// controllers.
type Agent struct {
	cfg  Config
	sup  *Supervisor
	view *nodeView // what the node console shows
}

// New returns the agent for cfg.
func New(cfg Config) *Agent {
	return &Agent{cfg: cfg, sup: NewSupervisor(cfg.Clock, cfg.MinBackoff, cfg.MaxBackoff, cfg.Logf), view: newNodeView()}
}

// Controllers is the status of every controller started so far.
func (a *Agent) Controllers() []ControllerStatus { return a.sup.Statuses() }

// Run is the node's life until ctx ends: report the boot status, keep the
// hub on a master (the keeper controller), keep the node's identity (the
// identity controller: enrollment, then the enrolled node's controllers)
// and show all of it on the node console (the console controller). A
// refusal by the hub is written to the console and ends the identity, not
// the keeper nor the console, which shows the refusal.
func (a *Agent) Run(ctx context.Context, st Status) error {
	Console(StatusLine(st))
	if err := EnsureDataID(); err != nil {
		Console("kubedosd: data partition: " + err.Error())
	}
	if err := os.MkdirAll(filepath.Dir(StatusJSON), 0o755); err == nil {
		b, _ := json.MarshalIndent(st, "", "  ")
		_ = durable.WriteFile(StatusJSON, b, 0o644)
	}
	ctrls := []Controller{controllerFunc{"identity", func(ctx context.Context) error {
		if err := a.runIdentity(ctx, st); err != nil && ctx.Err() == nil {
			Console(RefusedLinePrefix + err.Error())
			a.view.update(func(v *nodeView) { v.stopped = err })
		}
		return nil
	}}}
	if a.cfg.OpenConsole != nil {
		ctrls = append(ctrls, a.consoleController(st))
	}
	if a.cfg.ConsolePort != nil {
		ctrls = append(ctrls, a.consolePortController(st))
	}
	if a.cfg.Keeper != nil {
		ctrls = append(ctrls, controllerFunc{"hub-keeper", func(ctx context.Context) error { a.cfg.Keeper.Run(ctx); return nil }})
	}
	return a.sup.Run(ctx, ctrls...)
}
