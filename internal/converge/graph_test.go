package converge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func graphOf(t *testing.T, steps ...Step) *Graph {
	t.Helper()
	g := New()
	for _, s := range steps {
		if err := g.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		steps   []Step
		wantErr error
		wantMsg string
	}{
		{"ok", []Step{{ID: "a"}, {ID: "b", Deps: []string{"a"}}}, nil, ""},
		{"missing", []Step{{ID: "a", Deps: []string{"x"}}, {ID: "b", Deps: []string{"y"}}}, ErrMissingDep, "a needs x; b needs y"},
		{"self cycle", []Step{{ID: "a", Deps: []string{"a"}}}, ErrCycle, "a -> a"},
		{"cycle", []Step{{ID: "a", Deps: []string{"c"}}, {ID: "b", Deps: []string{"a"}}, {ID: "c", Deps: []string{"b"}}, {ID: "d"}}, ErrCycle, "a -> c -> b -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := graphOf(t, tt.steps...).Validate()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not name %q", err, tt.wantMsg)
			}
		})
	}
}

func TestAddDuplicate(t *testing.T) {
	g := New()
	_ = g.Add(Step{ID: "a"})
	if err := g.Add(Step{ID: "a"}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("got %v, want ErrDuplicate", err)
	}
}

func TestLevels(t *testing.T) {
	g := graphOf(t, Step{ID: "a"}, Step{ID: "b"}, Step{ID: "c", Deps: []string{"a"}}, Step{ID: "d", Deps: []string{"c", "b"}})
	got, err := g.Levels()
	if err != nil {
		t.Fatal(err)
	}
	if want := "[[a b] [c] [d]]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) Started(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, "start "+id)
}
func (r *recorder) Finished(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, fmt.Sprintf("%s %s", res.Status, res.ID))
}

func TestRunOrderAndFailurePropagation(t *testing.T) {
	var ran sync.Map
	run := func(id string, err error) func(context.Context) error {
		return func(context.Context) error { ran.Store(id, true); return err }
	}
	boom := errors.New("boom")
	g := graphOf(t,
		Step{ID: "a", Run: run("a", nil)},
		Step{ID: "b", Deps: []string{"a"}, Run: run("b", boom)},
		Step{ID: "c", Deps: []string{"b"}, Run: run("c", nil)},
		Step{ID: "d", Deps: []string{"c"}, Run: run("d", nil)},
		Step{ID: "e", Deps: []string{"a"}, Run: run("e", nil)}, // independent branch goes on
		Step{ID: "f", Deps: []string{"e", "c"}, Run: run("f", nil)},
	)
	res, err := g.Run(context.Background(), 2, nil)
	if !errors.Is(err, ErrStepsFailed) {
		t.Fatalf("want ErrStepsFailed, got %v", err)
	}
	want := map[string]Status{"a": Succeeded, "b": Failed, "c": Skipped, "d": Skipped, "e": Succeeded, "f": Skipped}
	for _, r := range res {
		if r.Status != want[r.ID] {
			t.Errorf("%s: got %s, want %s", r.ID, r.Status, want[r.ID])
		}
		if r.Status == Skipped && r.Cause != "b" {
			t.Errorf("%s skipped with cause %q, want b", r.ID, r.Cause)
		}
		if _, did := ran.Load(r.ID); did != (r.Status == Succeeded || r.Status == Failed) {
			t.Errorf("%s ran=%v with status %s", r.ID, did, r.Status)
		}
	}
	if !errors.Is(res[1].Err, boom) {
		t.Errorf("failed step error: %v", res[1].Err)
	}
}

func TestRunRespectsDependencies(t *testing.T) {
	rec := &recorder{}
	var mu sync.Mutex
	done := map[string]bool{}
	check := func(id string, deps ...string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range deps {
				if !done[d] {
					return fmt.Errorf("%s started before %s finished", id, d)
				}
			}
			done[id] = true
			return nil
		}
	}
	g := graphOf(t,
		Step{ID: "a", Run: check("a")},
		Step{ID: "b", Run: check("b")},
		Step{ID: "c", Deps: []string{"a", "b"}, Run: check("c", "a", "b")},
		Step{ID: "d", Deps: []string{"c"}, Run: check("d", "c")},
	)
	if _, err := g.Run(context.Background(), 4, rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.order) != 8 {
		t.Fatalf("observer saw %v", rec.order)
	}
}

func TestRunParallelismBound(t *testing.T) {
	for _, limit := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			var cur, peak atomic.Int32
			g := New()
			for i := 0; i < 12; i++ {
				_ = g.Add(Step{ID: fmt.Sprint(i), Run: func(context.Context) error {
					n := cur.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					time.Sleep(5 * time.Millisecond)
					cur.Add(-1)
					return nil
				}})
			}
			if _, err := g.Run(context.Background(), limit, nil); err != nil {
				t.Fatal(err)
			}
			if p := peak.Load(); p > int32(limit) || p < 1 {
				t.Fatalf("peak concurrency %d with limit %d", p, limit)
			}
			if limit > 1 && peak.Load() < 2 {
				t.Fatalf("never ran in parallel with limit %d", limit)
			}
		})
	}
}

func TestRunCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	g := graphOf(t,
		Step{ID: "slow", Run: func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}},
		Step{ID: "after", Deps: []string{"slow"}, Run: func(context.Context) error { return nil }},
		Step{ID: "queued", Run: func(context.Context) error { return nil }},
	)
	go func() { <-started; cancel() }()
	res, err := g.Run(ctx, 1, nil)
	if !errors.Is(err, ErrStepsFailed) {
		t.Fatalf("want ErrStepsFailed, got %v", err)
	}
	want := map[string]Status{"slow": Failed, "after": Skipped, "queued": Cancelled}
	for _, r := range res {
		if r.Status != want[r.ID] {
			t.Errorf("%s: got %s, want %s", r.ID, r.Status, want[r.ID])
		}
	}
}

func TestRunRejectsInvalidGraph(t *testing.T) {
	g := graphOf(t, Step{ID: "a", Deps: []string{"a"}})
	if _, err := g.Run(context.Background(), 1, nil); !errors.Is(err, ErrCycle) {
		t.Fatalf("got %v", err)
	}
	if _, err := New().Run(context.Background(), 0, nil); err == nil {
		t.Fatal("parallelism 0 accepted")
	}
}
