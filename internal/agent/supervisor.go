package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Controller is one subsystem of kubedosd (enrollment, renewal, the node
// API, the planes…). Run does its work until ctx ends: it returns nil when
// its work is done for good, an error to be restarted after a backoff, or
// a Fatal error that stops every controller (the node is quarantined).
type Controller interface {
	Name() string
	Run(ctx context.Context) error
}

// Clock is time as the agent sees it: the system's on a node, a fake one
// in tests, so that no loop test sleeps.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// sleep waits d on clock, or until ctx ends (false).
func sleep(ctx context.Context, clock Clock, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-clock.After(d):
		return true
	}
}

// fatalError ends the supervision of every controller.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }
func (f fatalError) Unwrap() error { return f.err }

// Fatal marks err as the end of the node's life under this supervisor.
func Fatal(err error) error { return fatalError{err} }

// Controller states, as `node health` and /metrics show them.
const (
	StateRunning = "running"
	StateBackoff = "backoff" // failed; restarted after a delay
	StateDone    = "done"    // its work is finished
	StateFailed  = "failed"  // fatal: every controller stopped
	StateStopped = "stopped" // kubedosd is stopping
)

// ControllerStatus is what the supervisor knows of one controller.
type ControllerStatus struct {
	Name      string
	State     string
	Since     time.Time // when it entered State
	Restarts  int
	LastError string // of the last failed run, kept after a restart
	// Detail is what the controller says it is doing, for those that say
	// (a Reporter): `node health` shows it.
	Detail string
}

// Reporter is a controller that says what it is doing.
type Reporter interface{ State() string }

// Supervisor runs controllers: each in its own goroutine owned by Run,
// restarted with exponential backoff when it fails, all stopped when ctx
// ends or one fails fatally. It keeps each one's status. Safe for
// concurrent use; Run may be called more than once (phases of a boot), the
// statuses accumulate.
type Supervisor struct {
	clock      Clock
	logf       func(string, ...any)
	minBackoff time.Duration
	maxBackoff time.Duration

	mu        sync.Mutex
	status    map[string]*ControllerStatus
	order     []string
	reporters map[string]Reporter
}

// NewSupervisor restarts failed controllers after minBackoff, doubling up
// to maxBackoff (and back to minBackoff after a run that lasted longer).
func NewSupervisor(clock Clock, minBackoff, maxBackoff time.Duration, logf func(string, ...any)) *Supervisor {
	return &Supervisor{clock: clock, logf: logf, minBackoff: minBackoff, maxBackoff: maxBackoff, status: map[string]*ControllerStatus{}}
}

// Run runs ctrls until every one is done, ctx ends (nil) or one fails
// fatally (its error). Every goroutine it starts has ended when it returns.
func (s *Supervisor) Run(ctx context.Context, ctrls ...Controller) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, c := range ctrls {
		s.set(c.Name(), StateRunning, nil, false)
		if r, ok := c.(Reporter); ok {
			s.mu.Lock()
			if s.reporters == nil {
				s.reporters = map[string]Reporter{}
			}
			s.reporters[c.Name()] = r
			s.mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	fatal := make(chan error, len(ctrls))
	for _, c := range ctrls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.supervise(ctx, c); err != nil {
				fatal <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-fatal:
		return err
	default:
		return nil
	}
}

func (s *Supervisor) supervise(ctx context.Context, c Controller) error {
	backoff := s.minBackoff
	for {
		started := s.clock.Now()
		err := runSafely(ctx, c)
		switch {
		case ctx.Err() != nil:
			s.set(c.Name(), StateStopped, nil, false)
			return nil
		case err == nil:
			s.set(c.Name(), StateDone, nil, false)
			return nil
		case errors.As(err, new(fatalError)):
			s.set(c.Name(), StateFailed, err, false)
			return err
		}
		if s.clock.Now().Sub(started) > s.maxBackoff {
			backoff = s.minBackoff
		}
		s.set(c.Name(), StateBackoff, err, false)
		s.logf("%s: %v; restarting in %s", c.Name(), err, backoff)
		if !sleep(ctx, s.clock, backoff) {
			s.set(c.Name(), StateStopped, nil, false)
			return nil
		}
		backoff = min(2*backoff, s.maxBackoff)
		s.set(c.Name(), StateRunning, nil, true)
	}
}

// runSafely turns a controller's panic into its error: one broken
// subsystem must not take the node's identity down with it.
func runSafely(ctx context.Context, c Controller) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return c.Run(ctx)
}

func (s *Supervisor) set(name, state string, err error, restarted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.status[name]
	if !ok {
		st = &ControllerStatus{Name: name}
		s.status[name] = st
		s.order = append(s.order, name)
	}
	st.State, st.Since = state, s.clock.Now()
	if err != nil {
		st.LastError = err.Error()
	}
	if restarted {
		st.Restarts++
	}
}

// Statuses is every controller's status, in the order they were started.
func (s *Supervisor) Statuses() []ControllerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ControllerStatus, 0, len(s.order))
	for _, n := range s.order {
		st := *s.status[n]
		if r := s.reporters[n]; r != nil {
			st.Detail = r.State()
		}
		out = append(out, st)
	}
	return slices.Clip(out)
}

// controllerFunc is a Controller made of a name and a function.
type controllerFunc struct {
	name string
	run  func(ctx context.Context) error
}

func (c controllerFunc) Name() string                  { return c.name }
func (c controllerFunc) Run(ctx context.Context) error { return c.run(ctx) }
