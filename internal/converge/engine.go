package converge

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Outcome is what converging one step did.
type Outcome string

// Convergence outcomes.
const (
	// Unchanged: Check found the step converged.
	Unchanged Outcome = "unchanged"
	// Changed: Check found drift, Apply fixed it, and Check agreed after.
	Changed Outcome = "changed"
	// Drifted: Check found drift and the run only checks (Options.CheckOnly).
	Drifted Outcome = "drifted"
	// OutcomeFailed: Check or Apply failed on every attempt, timed out,
	// panicked, or a check-only step is drifted.
	OutcomeFailed Outcome = "failed"
	// OutcomeSkipped: a step it depends on failed, so it never started.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeCancelled: the run's context ended before it started.
	OutcomeCancelled Outcome = "cancelled"
)

// Errors a step fails with, for errors.Is.
var (
	ErrTimeout     = errors.New("step timed out")
	ErrPanic       = errors.New("step panicked")
	ErrDrift       = errors.New("drifted")
	ErrDestructive = errors.New("destructive step not allowed")
)

// State is what Check found: converged, or drifted with a human diff.
type State struct {
	Converged bool
	Diff      string
}

// Clock is the engine's time: real in production, fake in tests so that
// timeouts and backoff never sleep.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options tune a convergence run; the zero value is usable.
type Options struct {
	// Parallelism bounds steps running at once (default 4).
	Parallelism int
	// Timeout bounds one attempt of a step that sets none (0: none).
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried, for steps
	// that set Retries to 0 (negative: never).
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one up to MaxBackoff (defaults 500 ms and 10 s).
	Backoff, MaxBackoff time.Duration
	// AllowDestructive names the opt-ins the caller granted (the spec's
	// destructive section); a drifted destructive step whose opt-in is not
	// here fails instead of applying.
	AllowDestructive []string
	// CheckOnly runs Check only: drift is reported, nothing applied.
	CheckOnly bool
	// Events hears of progress; called from one goroutine at a time.
	Events func(Event)
	Clock  Clock
}

func (o *Options) defaults() {
	if o.Parallelism < 1 {
		o.Parallelism = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
}

// Converge runs every step of the graph: Check, and if drifted (and
// allowed) Apply then Check again. A step starts once its dependencies are
// unchanged or changed; a failed step's dependents are skipped and
// independent steps go on. Steps without Check run their Run as in
// Graph.Run (changed when it succeeds). The record is returned even with an
// error; the error wraps ErrStepsFailed when any step did not converge.
func (g *Graph) Converge(ctx context.Context, opt Options) (*Record, error) {
	opt.defaults()
	if err := g.Validate(); err != nil {
		return nil, err
	}
	em := &emitter{fn: opt.Events}
	rec := &Record{Started: opt.Clock.Now(), Steps: make([]StepRecord, len(g.steps))}
	em.emit(Event{Kind: RunStarted, Time: rec.Started})
	// Each step's goroutine fills its own StepRecord before Run learns it
	// finished, so the observer and the code after Run read it safely.
	exec := New()
	for i, s := range g.steps {
		rec.Steps[i] = StepRecord{ID: s.ID, Phase: s.Phase, Deps: s.Deps, Reads: s.Reads, Writes: s.Writes}
		sr := &rec.Steps[i]
		s := s
		run := func(ctx context.Context) error { return g.converge(ctx, &opt, em, s, sr) }
		if err := exec.Add(Step{ID: s.ID, Phase: s.Phase, Deps: s.Deps, Run: run}); err != nil {
			return nil, err
		}
	}
	obs := &runObserver{rec: rec, index: g.index, em: em, clock: opt.Clock}
	_, err := exec.Run(ctx, opt.Parallelism, obs)
	rec.Ended = opt.Clock.Now()
	rec.Duration = rec.Ended.Sub(rec.Started)
	for _, s := range rec.Steps {
		rec.Counts.add(s.Outcome)
	}
	em.emit(Event{Kind: RunFinished, Time: rec.Ended, Counts: &rec.Counts})
	if err != nil && !errors.Is(err, ErrStepsFailed) {
		return rec, err
	}
	var bad []string
	for _, s := range rec.Steps {
		switch s.Outcome {
		case Changed, Unchanged, Drifted:
		default:
			bad = append(bad, fmt.Sprintf("%s %s", s.ID, s.Outcome))
		}
	}
	if len(bad) > 0 {
		return rec, fmt.Errorf("%w: %s", ErrStepsFailed, strings.Join(bad, ", "))
	}
	return rec, nil
}

// converge runs one step to its outcome, filling sr; an error makes Run
// skip the step's dependents.
func (g *Graph) converge(ctx context.Context, opt *Options, em *emitter, s Step, sr *StepRecord) error {
	timeout, retries := s.Timeout, s.Retries
	if timeout == 0 {
		timeout = opt.Timeout
	}
	if retries == 0 {
		retries = opt.Retries
	}
	wait := opt.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		sr.Attempts = attempt
		err = g.attempt(ctx, opt, timeout, s, sr)
		if err == nil || attempt > retries || ctx.Err() != nil || errors.Is(err, ErrDestructive) {
			break
		}
		em.emit(Event{Kind: StepRetry, Time: opt.Clock.Now(), Step: s.ID, Attempt: attempt, Err: err.Error(), Wait: wait})
		select {
		case <-ctx.Done():
		case <-opt.Clock.After(wait):
		}
		wait = min(2*wait, opt.MaxBackoff)
	}
	if err != nil {
		sr.Outcome, sr.Error = OutcomeFailed, err.Error()
		return err
	}
	return nil
}

// attempt is one try: Check, then Apply and Check again when drifted.
func (g *Graph) attempt(ctx context.Context, opt *Options, timeout time.Duration, s Step, sr *StepRecord) error {
	if s.Check == nil {
		if s.Run == nil { // only orders others
			sr.Outcome = Unchanged
			return nil
		}
		if err := run(ctx, opt.Clock, timeout, s.Run); err != nil {
			return err
		}
		sr.Outcome = Changed
		return nil
	}
	st, err := check(ctx, opt.Clock, timeout, s)
	if err != nil {
		return err
	}
	if st.Converged {
		sr.Outcome, sr.Diff = Unchanged, ""
		return nil
	}
	sr.Diff = st.Diff
	switch {
	case opt.CheckOnly:
		sr.Outcome = Drifted
		return nil
	case s.Apply == nil:
		return fmt.Errorf("%w: %s", ErrDrift, firstLine(st.Diff))
	case s.Destructive != "" && !allowed(opt.AllowDestructive, s.Destructive):
		// Named with the diff's first line: what it would destroy.
		return fmt.Errorf("%w: %s: applying it is destructive; the spec must opt in (destructive.%s)", ErrDestructive, firstLine(st.Diff), s.Destructive)
	}
	if err := run(ctx, opt.Clock, timeout, s.Apply); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	after, err := check(ctx, opt.Clock, timeout, s)
	if err != nil {
		return fmt.Errorf("check after apply: %w", err)
	}
	if !after.Converged {
		return fmt.Errorf("%w after apply: %s", ErrDrift, firstLine(after.Diff))
	}
	sr.Outcome = Changed
	return nil
}

func check(ctx context.Context, clock Clock, timeout time.Duration, s Step) (State, error) {
	return bounded(ctx, clock, timeout, s.Check)
}

// run adapts an action without a result to bounded.
func run(ctx context.Context, clock Clock, timeout time.Duration, fn func(context.Context) error) error {
	_, err := bounded(ctx, clock, timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

type outcome[T any] struct {
	v   T
	err error
}

// bounded calls fn with panic recovery and, when timeout > 0, gives up on
// it after timeout (measured on clock): fn's context is cancelled and its
// goroutine is left to return on its own; it owns nothing of the run's and
// its result goes to a buffered channel nobody reads.
func bounded[T any](ctx context.Context, clock Clock, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	if timeout <= 0 {
		return safely(ctx, fn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := clock.After(timeout) // armed before fn runs, so a fake clock can fire it from inside fn
	done := make(chan outcome[T], 1)
	go func() {
		v, err := safely(ctx, fn)
		done <- outcome[T]{v, err}
	}()
	select {
	case o := <-done:
		return o.v, o.err
	case <-timer:
		var zero T
		return zero, fmt.Errorf("%w after %v", ErrTimeout, timeout)
	}
}

// safely turns a panic in fn into an error carrying the panic's text.
func safely[T any](ctx context.Context, fn func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, firstLines(string(debug.Stack()), 12))
		}
	}()
	return fn(ctx)
}

func allowed(granted []string, optIn string) bool {
	for _, g := range granted {
		if g == optIn {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// emitter serialises events from the steps' goroutines.
type emitter struct {
	mu sync.Mutex
	fn func(Event)
}

func (e *emitter) emit(ev Event) {
	if e.fn == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fn(ev)
}
