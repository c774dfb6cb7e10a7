package converge

import (
	"time"
)

// Record is one convergence run: every step's outcome, diff and timing.
type Record struct {
	Started  time.Time     `json:"started"`
	Ended    time.Time     `json:"ended"`
	Duration time.Duration `json:"duration"`
	Counts   Counts        `json:"counts"`
	// Steps are in the graph's insertion order.
	Steps []StepRecord `json:"steps"`
}

// Counts tallies a run's outcomes.
type Counts struct {
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
	Drifted   int `json:"drifted,omitempty"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Cancelled int `json:"cancelled,omitempty"`
}

func (c *Counts) add(o Outcome) {
	switch o {
	case Changed:
		c.Changed++
	case Unchanged:
		c.Unchanged++
	case Drifted:
		c.Drifted++
	case OutcomeFailed:
		c.Failed++
	case OutcomeSkipped:
		c.Skipped++
	default:
		c.Cancelled++
	}
}

// StepRecord is one step of a run.
type StepRecord struct {
	ID     string   `json:"id"`
	Phase  string   `json:"phase,omitempty"`
	Deps   []string `json:"deps,omitempty"`
	Reads  []string `json:"reads,omitempty"`
	Writes []string `json:"writes,omitempty"`
	// Outcome is empty only while the step runs.
	Outcome Outcome `json:"outcome"`
	// Diff is what Check found drifted (kept after Apply fixed it).
	Diff string `json:"diff,omitempty"`
	// Error is why the step failed; Cause names the failed dependency of
	// a skipped step.
	Error    string        `json:"error,omitempty"`
	Cause    string        `json:"cause,omitempty"`
	Attempts int           `json:"attempts,omitempty"`
	Started  time.Time     `json:"started,omitzero"`
	Ended    time.Time     `json:"ended,omitzero"`
	Duration time.Duration `json:"duration"`
}

// EventKind says what an Event reports.
type EventKind string

// Events, in the order a run emits them: RunStarted; per step StepStarted,
// StepRetry (per retried attempt), StepFinished (a skipped or cancelled
// step has only StepFinished); RunFinished.
const (
	RunStarted   EventKind = "run-started"
	StepStarted  EventKind = "step-started"
	StepRetry    EventKind = "step-retry"
	StepFinished EventKind = "step-finished"
	RunFinished  EventKind = "run-finished"
)

// Event is one piece of progress.
type Event struct {
	Kind EventKind `json:"kind"`
	Time time.Time `json:"time"`
	Step string    `json:"step,omitempty"`
	// Attempt and Wait: the attempt that failed and the backoff before
	// the next (StepRetry).
	Attempt int           `json:"attempt,omitempty"`
	Wait    time.Duration `json:"wait,omitempty"`
	Err     string        `json:"error,omitempty"`
	// Result is the step's record (StepFinished).
	Result *StepRecord `json:"result,omitempty"`
	// Counts are the run's totals (RunFinished).
	Counts *Counts `json:"counts,omitempty"`
}

// runObserver turns Graph.Run's observations into timings, outcomes and events.
type runObserver struct {
	rec   *Record
	index map[string]int
	em    *emitter
	clock Clock
}

func (r *runObserver) Started(id string) {
	sr := &r.rec.Steps[r.index[id]]
	sr.Started = r.clock.Now()
	r.em.emit(Event{Kind: StepStarted, Time: sr.Started, Step: id})
}

func (r *runObserver) Finished(res Result) {
	sr := &r.rec.Steps[r.index[res.ID]]
	sr.Ended = r.clock.Now()
	if !sr.Started.IsZero() {
		sr.Duration = sr.Ended.Sub(sr.Started)
	}
	switch res.Status {
	case Skipped:
		sr.Outcome, sr.Cause = OutcomeSkipped, res.Cause
		sr.Error = "not run: " + res.Cause + " failed"
	case Cancelled:
		sr.Outcome = OutcomeCancelled
		if res.Err != nil {
			sr.Error = res.Err.Error()
		}
	case Failed:
		if sr.Outcome == "" { // converge fills it; keep a plain failure
			sr.Outcome = OutcomeFailed
		}
		if sr.Error == "" && res.Err != nil {
			sr.Error = res.Err.Error()
		}
	}
	cp := *sr
	r.em.emit(Event{Kind: StepFinished, Time: sr.Ended, Step: res.ID, Result: &cp})
}
