package converge

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Status is the outcome of one step in a run.
type Status string

// Step outcomes.
const (
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	// Skipped: a step it depends on failed, so it never started.
	Skipped Status = "skipped"
	// Cancelled: the context ended before it started.
	Cancelled Status = "cancelled"
)

// Result is one step's outcome.
type Result struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	Err    error  `json:"-"`
	// Cause names the failed dependency for a skipped step.
	Cause string `json:"cause,omitempty"`
}

// Observer hears about steps as they start and finish; it may be nil. It is
// called from the goroutine that called Run, never concurrently.
type Observer interface {
	Started(id string)
	Finished(r Result)
}

// ErrStepsFailed is returned (wrapped) by Run when any step failed or was cancelled.
var ErrStepsFailed = errors.New("steps did not all succeed")

type done struct {
	i   int
	err error
}

// Run executes the graph: a step starts once all its dependencies succeeded,
// at most parallelism at a time. A failed step's dependents are skipped;
// independent branches go on. When ctx ends no new step starts and Run waits
// for the running ones, which see ctx. Results come back in insertion order.
func (g *Graph) Run(ctx context.Context, parallelism int, obs Observer) ([]Result, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if parallelism < 1 {
		return nil, fmt.Errorf("run: parallelism must be at least 1, got %d", parallelism)
	}
	n := len(g.steps)
	results := make([]Result, n)
	waiting := make([]int, n) // unfinished dependencies
	dependents := make([][]int, n)
	for i, s := range g.steps {
		results[i].ID = s.ID
		waiting[i] = len(s.Deps)
		for _, d := range s.Deps {
			j := g.index[d]
			dependents[j] = append(dependents[j], i)
		}
	}
	var ready []int
	for i := range g.steps {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	finished := make(chan done)
	running, settled := 0, 0
	settle := func(r Result, i int) {
		results[i] = r
		settled++
		if obs != nil {
			obs.Finished(r)
		}
	}
	// skip marks every transitive dependent of i as skipped, once each.
	var skip func(i int, cause string)
	skip = func(i int, cause string) {
		for _, d := range dependents[i] {
			if results[d].Status == "" {
				settle(Result{ID: g.steps[d].ID, Status: Skipped, Cause: cause}, d)
				skip(d, cause)
			}
		}
	}
	for settled < n {
		for running < parallelism && len(ready) > 0 && ctx.Err() == nil {
			i := ready[0]
			ready = ready[1:]
			running++
			if obs != nil {
				obs.Started(g.steps[i].ID)
			}
			go func(i int, run func(context.Context) error) {
				var err error
				if run != nil {
					err = run(ctx)
				}
				finished <- done{i, err}
			}(i, g.steps[i].Run)
		}
		if running == 0 {
			break // nothing running and nothing can start: ctx ended
		}
		d := <-finished
		running--
		id := g.steps[d.i].ID
		if d.err != nil {
			settle(Result{ID: id, Status: Failed, Err: d.err}, d.i)
			skip(d.i, id)
			continue
		}
		settle(Result{ID: id, Status: Succeeded}, d.i)
		for _, dep := range dependents[d.i] {
			if waiting[dep]--; waiting[dep] == 0 && results[dep].Status == "" {
				ready = append(ready, dep)
			}
		}
	}
	var bad []string
	for i := range results {
		if results[i].Status == "" {
			results[i].Status = Cancelled
			results[i].Err = ctx.Err()
			if obs != nil {
				obs.Finished(results[i])
			}
		}
		if results[i].Status != Succeeded {
			bad = append(bad, fmt.Sprintf("%s %s", results[i].ID, results[i].Status))
		}
	}
	if len(bad) > 0 {
		return results, fmt.Errorf("%w: %s", ErrStepsFailed, strings.Join(bad, ", "))
	}
	return results, nil
}
