package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// powerState holds the one reboot or shutdown a node may have pending.
// Its timer goroutine is owned by Serve's ctx.
type powerState struct {
	mu      sync.Mutex
	ctx     context.Context
	wg      sync.WaitGroup
	pending *api.Power
}

func (p *powerState) start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctx = ctx
}

func (p *powerState) wait() { p.wg.Wait() }

// schedule answers at once and acts after delay; a second request while
// one is pending gets the pending one's answer.
func (p *powerState) schedule(action string, delay time.Duration, now time.Time, act func(context.Context, string) error, logf func(string, ...any)) (*api.Power, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return nil, fmt.Errorf("%w: the node API is stopping", ErrRefused)
	}
	if p.pending != nil {
		if p.pending.Action != action {
			return nil, fmt.Errorf("%w: a %s is already pending for %s", ErrRefused, p.pending.Action, p.pending.At.Format(time.RFC3339))
		}
		out := *p.pending
		return &out, nil
	}
	p.pending = &api.Power{Action: action, At: now.Add(delay).UTC()}
	ctx := p.ctx
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if err := act(ctx, action); err != nil {
			logf("%s failed: %v", action, err)
			p.mu.Lock()
			p.pending = nil
			p.mu.Unlock()
		}
	}()
	out := *p.pending
	return &out, nil
}
