package converge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock fires a timer once Advance moves past it; no test sleeps.
// With auto set, every After fires at once (backoff waits in a test).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	auto   bool
	timers []fakeTimer
	waits  []time.Duration
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0).UTC()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if c.auto {
		c.now = c.now.Add(d)
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

// converged and drifted are Check results.
func converged(context.Context) (State, error) { return State{Converged: true}, nil }

// toggle is a step drifted until applied.
type toggle struct {
	mu      sync.Mutex
	applied bool
	applies int
}

func (t *toggle) check(context.Context) (State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.applied {
		return State{Converged: true}, nil
	}
	return State{Diff: "-off\n+on\n"}, nil
}

func (t *toggle) apply(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.applied = true
	t.applies++
	return nil
}

func outcomes(rec *Record) map[string]Outcome {
	out := map[string]Outcome{}
	for _, s := range rec.Steps {
		out[s.ID] = s.Outcome
	}
	return out
}

func TestConvergeOutcomes(t *testing.T) {
	tg, dt := &toggle{}, &toggle{}
	flaky := 0
	tests := []struct {
		name    string
		steps   []Step
		opt     Options
		want    map[string]Outcome
		wantErr error
		errHas  map[string]string // step → substring of its error
	}{
		{
			name: "converged and applied",
			steps: []Step{
				{ID: "a", Check: converged},
				{ID: "b", Deps: []string{"a"}, Check: tg.check, Apply: tg.apply},
			},
			want: map[string]Outcome{"a": Unchanged, "b": Changed},
		},
		{
			name: "a gate that is drifted fails, dependents skip, independent steps go on",
			steps: []Step{
				{ID: "gate", Check: func(context.Context) (State, error) { return State{Diff: "w-1: quarantined (pcr 7)"}, nil }},
				{ID: "after", Deps: []string{"gate"}, Check: converged},
				{ID: "after2", Deps: []string{"after"}, Check: converged},
				{ID: "other", Check: converged},
			},
			want:    map[string]Outcome{"gate": OutcomeFailed, "after": OutcomeSkipped, "after2": OutcomeSkipped, "other": Unchanged},
			wantErr: ErrStepsFailed,
			errHas:  map[string]string{"gate": "w-1: quarantined", "after2": "gate failed"},
		},
		{
			name: "a panic fails its step only",
			steps: []Step{
				{ID: "boom", Check: func(context.Context) (State, error) { panic("nil map in step") }},
				{ID: "dep", Deps: []string{"boom"}, Check: converged},
				{ID: "free", Check: converged},
			},
			want:    map[string]Outcome{"boom": OutcomeFailed, "dep": OutcomeSkipped, "free": Unchanged},
			wantErr: ErrStepsFailed,
			errHas:  map[string]string{"boom": "panicked: nil map in step"},
		},
		{
			name: "retries until it succeeds",
			steps: []Step{{ID: "flaky", Retries: 3, Check: func(context.Context) (State, error) {
				if flaky++; flaky < 3 {
					return State{}, errors.New("hub unavailable")
				}
				return State{Converged: true}, nil
			}}},
			want: map[string]Outcome{"flaky": Unchanged},
		},
		{
			name: "destructive step without the opt-in",
			steps: []Step{{ID: "wipe", Destructive: "wipeDisks", Retries: 2, Check: (&toggle{}).check,
				Apply: func(context.Context) error { panic("must not apply") }}},
			want:    map[string]Outcome{"wipe": OutcomeFailed},
			wantErr: ErrStepsFailed,
			// The error names what it would destroy (the diff's first
			// line) and the opt-in.
			errHas: map[string]string{"wipe": "-off …: applying it is destructive; the spec must opt in (destructive.wipeDisks)"},
		},
		{
			name:  "destructive step with the opt-in",
			steps: []Step{{ID: "wipe", Destructive: "wipeDisks", Check: dt.check, Apply: dt.apply}},
			opt:   Options{AllowDestructive: []string{"recreateVMs", "wipeDisks"}},
			want:  map[string]Outcome{"wipe": Changed},
		},
		{
			name:    "an apply that does not converge fails",
			steps:   []Step{{ID: "stuck", Check: (&toggle{}).check, Apply: func(context.Context) error { return nil }}},
			want:    map[string]Outcome{"stuck": OutcomeFailed},
			wantErr: ErrStepsFailed,
			errHas:  map[string]string{"stuck": "drifted after apply"},
		},
		{
			name:  "check only reports drift without applying",
			steps: []Step{{ID: "x", Check: (&toggle{}).check, Apply: func(context.Context) error { panic("must not apply") }}},
			opt:   Options{CheckOnly: true},
			want:  map[string]Outcome{"x": Drifted},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New()
			for _, s := range tt.steps {
				if err := g.Add(s); err != nil {
					t.Fatal(err)
				}
			}
			clock := newFakeClock()
			clock.auto = true
			tt.opt.Clock = clock
			rec, err := g.Converge(context.Background(), tt.opt)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			got := outcomes(rec)
			for id, want := range tt.want {
				if got[id] != want {
					t.Errorf("%s: outcome %q, want %q", id, got[id], want)
				}
			}
			for _, s := range rec.Steps {
				if has, ok := tt.errHas[s.ID]; ok && !strings.Contains(s.Error, has) {
					t.Errorf("%s: error %q, want it to contain %q", s.ID, s.Error, has)
				}
			}
		})
	}
	if tg.applies != 1 {
		t.Errorf("applied %d times, want 1", tg.applies)
	}
}

func TestConvergeBackoffDoubles(t *testing.T) {
	g := New()
	calls := 0
	_ = g.Add(Step{ID: "down", Retries: 4, Check: func(context.Context) (State, error) {
		calls++
		return State{}, errors.New("connection refused")
	}})
	clock := newFakeClock()
	clock.auto = true
	rec, err := g.Converge(context.Background(), Options{Clock: clock, Backoff: time.Second, MaxBackoff: 3 * time.Second})
	if !errors.Is(err, ErrStepsFailed) {
		t.Fatalf("err = %v", err)
	}
	if got, want := fmt.Sprint(clock.waits), "[1s 2s 3s 3s]"; got != want {
		t.Errorf("backoff waits %s, want %s", got, want)
	}
	if calls != 5 || rec.Steps[0].Attempts != 5 {
		t.Errorf("calls %d, attempts %d, want 5", calls, rec.Steps[0].Attempts)
	}
	if got := rec.Steps[0].Duration; got != 9*time.Second {
		t.Errorf("duration %v on the fake clock, want 9s", got)
	}
}

func TestConvergeTimeout(t *testing.T) {
	clock := newFakeClock()
	g := New()
	_ = g.Add(Step{ID: "hang", Timeout: time.Minute, Check: func(ctx context.Context) (State, error) {
		clock.Advance(2 * time.Minute) // the engine's timer is armed: this fires it
		<-ctx.Done()
		return State{}, ctx.Err()
	}})
	_ = g.Add(Step{ID: "after", Deps: []string{"hang"}, Check: converged})
	rec, err := g.Converge(context.Background(), Options{Clock: clock})
	if !errors.Is(err, ErrStepsFailed) {
		t.Fatalf("err = %v", err)
	}
	if s := rec.Steps[0]; s.Outcome != OutcomeFailed || !strings.Contains(s.Error, "timed out after 1m0s") {
		t.Errorf("hang: %s %q, want failed, timed out", s.Outcome, s.Error)
	}
	if s := rec.Steps[1]; s.Outcome != OutcomeSkipped || s.Cause != "hang" {
		t.Errorf("after: %s cause %q, want skipped by hang", s.Outcome, s.Cause)
	}
}

func TestConvergeEventsOrder(t *testing.T) {
	g := New()
	n := 0
	_ = g.Add(Step{ID: "a", Retries: 1, Check: func(context.Context) (State, error) {
		if n++; n == 1 {
			return State{}, errors.New("once")
		}
		return State{Converged: true}, nil
	}})
	_ = g.Add(Step{ID: "b", Deps: []string{"a"}, Check: (&toggle{}).check})
	_ = g.Add(Step{ID: "c", Deps: []string{"b"}, Check: converged})
	clock := newFakeClock()
	clock.auto = true
	var got []string
	_, _ = g.Converge(context.Background(), Options{Clock: clock, Parallelism: 1, Events: func(e Event) {
		s := string(e.Kind)
		if e.Step != "" {
			s += " " + e.Step
		}
		if e.Result != nil {
			s += " " + string(e.Result.Outcome)
		}
		got = append(got, s)
	}})
	want := []string{"run-started", "step-started a", "step-retry a", "step-finished a unchanged",
		"step-started b", "step-finished b failed", "step-finished c skipped", "run-finished"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestConvergeSecondRunUnchanged(t *testing.T) {
	tg := &toggle{}
	g := New()
	_ = g.Add(Step{ID: "cfg", Check: tg.check, Apply: tg.apply})
	_ = g.Add(Step{ID: "gate", Deps: []string{"cfg"}, Check: converged})
	for i, want := range []Counts{{Changed: 1, Unchanged: 1}, {Unchanged: 2}} {
		rec, err := g.Converge(context.Background(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Counts != want {
			t.Errorf("run %d: counts %+v, want %+v", i+1, rec.Counts, want)
		}
	}
}
