// Package converge is a generic DAG engine: steps with explicit dependencies,
// checked for cycles and missing dependencies, run with bounded parallelism.
// It knows nothing of clusters; callers plug their steps in.
package converge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors, for errors.Is.
var (
	ErrDuplicate  = errors.New("duplicate step")
	ErrMissingDep = errors.New("missing dependency")
	ErrCycle      = errors.New("dependency cycle")
)

// Step is one node of the graph. Run may be nil for a step that only orders
// others. A convergence step (Graph.Converge) sets Check, and Apply unless it
// only checks (a gate: drift fails it).
type Step struct {
	ID    string
	Phase string
	Deps  []string
	Run   func(ctx context.Context) error

	// Reads and Writes name what the step reads and changes, for the run
	// record and the reader of a plan (free-form: "hub:nodes", "node/w-1:config").
	Reads, Writes []string
	// Check reports converged, or drifted with a diff; it changes nothing.
	Check func(ctx context.Context) (State, error)
	// Apply makes the step converged; it must be idempotent.
	Apply func(ctx context.Context) error
	// Destructive names the opt-in Apply needs (empty: not destructive).
	Destructive string
	// Timeout bounds one attempt and Retries counts retries after a failed
	// one; zero takes Options', a negative Retries never retries.
	Timeout time.Duration
	Retries int
}

// Edge says To depends on From.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Graph holds steps in insertion order; that order breaks every tie, so
// output and scheduling are deterministic.
type Graph struct {
	steps []Step
	index map[string]int
}

// New returns an empty graph.
func New() *Graph { return &Graph{index: map[string]int{}} }

// Add inserts a step. Its dependencies may be added later; Validate checks them.
func (g *Graph) Add(s Step) error {
	if s.ID == "" {
		return fmt.Errorf("add step: empty id")
	}
	if _, dup := g.index[s.ID]; dup {
		return fmt.Errorf("add step %q: %w", s.ID, ErrDuplicate)
	}
	g.index[s.ID] = len(g.steps)
	s.Deps = append([]string(nil), s.Deps...)
	s.Reads = append([]string(nil), s.Reads...)
	s.Writes = append([]string(nil), s.Writes...)
	g.steps = append(g.steps, s)
	return nil
}

// Steps returns the steps in insertion order.
func (g *Graph) Steps() []Step { return append([]Step(nil), g.steps...) }

// Edges returns every dependency edge, in step then dependency order.
func (g *Graph) Edges() []Edge {
	var out []Edge
	for _, s := range g.steps {
		for _, d := range s.Deps {
			out = append(out, Edge{From: d, To: s.ID})
		}
	}
	return out
}

// Validate reports every missing dependency, then the first cycle found,
// naming the steps on it.
func (g *Graph) Validate() error {
	var missing []string
	for _, s := range g.steps {
		for _, d := range s.Deps {
			if _, ok := g.index[d]; !ok {
				missing = append(missing, fmt.Sprintf("%s needs %s", s.ID, d))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingDep, strings.Join(missing, "; "))
	}
	if cyc := g.findCycle(); cyc != nil {
		return fmt.Errorf("%w: %s", ErrCycle, strings.Join(cyc, " -> "))
	}
	return nil
}

func (g *Graph) findCycle() []string {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int, len(g.steps))
	var stack []string
	var visit func(i int) []string
	visit = func(i int) []string {
		state[i] = onStack
		stack = append(stack, g.steps[i].ID)
		for _, d := range g.steps[i].Deps {
			j := g.index[d]
			switch state[j] {
			case onStack:
				for k, id := range stack {
					if id == d {
						return append(append([]string(nil), stack[k:]...), d)
					}
				}
			case unvisited:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		return nil
	}
	for i := range g.steps {
		if state[i] == unvisited {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// Levels groups steps into generations: every step's dependencies are in
// earlier levels. Within a level, insertion order.
func (g *Graph) Levels() ([][]string, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	level := make([]int, len(g.steps))
	var depth func(i int) int
	memo := make([]bool, len(g.steps))
	depth = func(i int) int {
		if memo[i] {
			return level[i]
		}
		l := 0
		for _, d := range g.steps[i].Deps {
			if dl := depth(g.index[d]) + 1; dl > l {
				l = dl
			}
		}
		level[i], memo[i] = l, true
		return l
	}
	var out [][]string
	for i, s := range g.steps {
		l := depth(i)
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], s.ID)
	}
	return out, nil
}
