package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
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
