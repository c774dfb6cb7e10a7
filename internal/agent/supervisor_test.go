package agent

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

// TestSupervisorRestartsWithBackoff: a failing controller is restarted
// after 1 s, 2 s, 4 s… (fake clock), its restarts and last error counted;
// once it succeeds it is done and Run returns.
func TestSupervisorRestartsWithBackoff(t *testing.T) {
	clock := newFakeClock()
	s := NewSupervisor(clock, time.Second, 8*time.Second, t.Logf)
	var runs atomic.Int32
	flaky := controllerFunc{"flaky", func(context.Context) error {
		if runs.Add(1) <= 3 {
			return errors.New("hub unreachable")
		}
		return nil
	}}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), flaky) }()
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		clock.awaitWaiters(t, 1)
		if st := s.Statuses()[0]; st.State != StateBackoff || st.Restarts != i || st.LastError != "hub unreachable" {
			t.Errorf("after failure %d: %+v", i+1, st)
		}
		clock.Advance(want - time.Millisecond)
		if clock.Waiting() != 1 {
			t.Fatalf("restarted before its backoff of %s", want)
		}
		clock.Advance(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Statuses()[0]; st.State != StateDone || st.Restarts != 3 || runs.Load() != 4 {
		t.Errorf("final status %+v after %d runs", st, runs.Load())
	}
}

// TestSupervisorFatalStopsAll: a fatal error stops every controller and is
// Run's answer; a panic is an ordinary failure.
func TestSupervisorFatalStopsAll(t *testing.T) {
	clock := newFakeClock()
	s := NewSupervisor(clock, time.Second, time.Minute, t.Logf)
	refused := errors.New("quarantined")
	var panics atomic.Int32
	ctrls := []Controller{
		controllerFunc{"server", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		controllerFunc{"panicky", func(context.Context) error { panics.Add(1); panic("bug") }},
		controllerFunc{"renewal", func(ctx context.Context) error {
			select {
			case <-clock.After(time.Hour):
				return Fatal(refused)
			case <-ctx.Done():
				return nil
			}
		}},
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), ctrls...) }()
	clock.awaitWaiters(t, 2) // renewal's hour and panicky's backoff
	clock.Advance(time.Hour)
	if err := <-done; !errors.Is(err, refused) {
		t.Fatalf("Run = %v, want the fatal error", err)
	}
	got := map[string]string{}
	for _, st := range s.Statuses() {
		got[st.Name] = st.State
	}
	if got["server"] != StateStopped || got["renewal"] != StateFailed || got["panicky"] != StateStopped || panics.Load() < 1 {
		t.Errorf("states %v, panics %d", got, panics.Load())
	}
}

// TestSupervisorStopsOnCancel: ctx ending stops everything and Run returns
// nil once every goroutine has ended.
func TestSupervisorStopsOnCancel(t *testing.T) {
	s := NewSupervisor(newFakeClock(), time.Second, time.Minute, t.Logf)
	ctx, cancel := context.WithCancel(context.Background())
	var ended atomic.Int32
	block := func(ctx context.Context) error { <-ctx.Done(); ended.Add(1); return ctx.Err() }
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, controllerFunc{"a", block}, controllerFunc{"b", block}) }()
	cancel()
	if err := <-done; err != nil || ended.Load() != 2 {
		t.Errorf("Run = %v with %d controllers ended", err, ended.Load())
	}
	for _, st := range s.Statuses() {
		if st.State != StateStopped {
			t.Errorf("%+v", st)
		}
	}
}

type fixedControllers []ControllerStatus

func (f fixedControllers) Statuses() []ControllerStatus { return f }

// TestControllersInHealthAndMetrics: `node health` lists every controller
// with its state (reported, never critical) and /metrics has a series each.
func TestControllersInHealthAndMetrics(t *testing.T) {
	now := time.Now()
	ctrls := fixedControllers{
		{Name: "renewal", State: StateRunning, Since: now.Add(-time.Minute)},
		{Name: "planes", State: StateBackoff, Since: now, Restarts: 3, LastError: "hub unreachable"},
		{Name: "enrollment", State: StateDone, Since: now},
	}
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.Controllers = ctrls })
	h, err := e.as("rita", pki.RoleReader).Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]api.HealthCheck{}
	for _, c := range h.Checks {
		got[c.Name] = c
	}
	if c := got["controller renewal"]; !c.OK || c.Critical || !strings.HasPrefix(c.Detail, "running for ") {
		t.Errorf("renewal: %+v", c)
	}
	if c := got["controller planes"]; c.OK || c.Critical || !strings.Contains(c.Detail, "3 restart(s); last error: hub unreachable") {
		t.Errorf("planes: %+v", c)
	}
	if c := got["controller enrollment"]; !c.OK {
		t.Errorf("enrollment: %+v", c)
	}
	if !h.Healthy {
		t.Errorf("a controller backing off made the node unhealthy: %+v", h)
	}
	var b strings.Builder
	if err := e.api.WriteMetrics(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`kubedos_controller_up{controller="renewal",state="running"} 1`,
		`kubedos_controller_up{controller="planes",state="backoff"} 0`,
		`kubedos_controller_restarts_total{controller="planes"} 3`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}
