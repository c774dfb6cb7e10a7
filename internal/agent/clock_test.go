package agent

import (
	"sync"
	"testing"
	"time"
)

// fakeClock only moves when a test advances it; After channels fire then.
// Waiting shows how many goroutines wait on it, so a test can advance once
// a loop is parked.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	parked  chan struct{} // signalled on each new waiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), parked: make(chan struct{}, 1024)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	select {
	case c.parked <- struct{}{}:
	default: // plenty queued already
	}
	return ch
}

// Advance moves the clock by d and fires every waiter due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// Waiting is the number of pending After calls.
func (c *fakeClock) Waiting() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.waiters) }

// awaitWaiters blocks until n After calls are pending (a real-time bound
// only against a hung test, never asserted as a duration).
func (c *fakeClock) awaitWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for c.Waiting() < n {
		select {
		case <-c.parked:
		case <-deadline:
			t.Fatalf("%d goroutines wait on the clock, want %d", c.Waiting(), n)
		}
	}
}
