package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/converge"
)

// Document is the JSON shape of a plan: stable, for scripts and golden files.
type Document struct {
	Cluster string          `json:"cluster"`
	Steps   []StepDoc       `json:"steps"`
	Edges   []converge.Edge `json:"edges"`
	Levels  [][]string      `json:"levels"`
	// LastRun is the hub's last convergence run, when it answered; each
	// step's Last is its outcome there.
	LastRun *LastRun `json:"lastRun,omitempty"`
}

// LastRun names the run the steps' Last outcomes come from.
type LastRun struct {
	Seq     uint64    `json:"seq"`
	Outcome string    `json:"outcome"`
	Ended   time.Time `json:"ended"`
	Actor   string    `json:"actor,omitempty"`
}

// SetLast marks each step with its outcome in run (by step ID); a step the
// run did not have is left unmarked.
func (d *Document) SetLast(run LastRun, outcomes map[string]string) {
	d.LastRun = &run
	for i := range d.Steps {
		d.Steps[i].Last = outcomes[d.Steps[i].ID]
	}
}

// StepDoc is one step in a Document.
type StepDoc struct {
	ID    string   `json:"id"`
	Phase string   `json:"phase"`
	Deps  []string `json:"deps"`
	Last  string   `json:"last,omitempty"`
}

// NewDocument describes g.
func NewDocument(cluster string, g *converge.Graph) (Document, error) {
	levels, err := g.Levels()
	if err != nil {
		return Document{}, err
	}
	doc := Document{Cluster: cluster, Edges: g.Edges(), Levels: levels}
	if doc.Edges == nil {
		doc.Edges = []converge.Edge{}
	}
	for _, s := range g.Steps() {
		deps := s.Deps
		if deps == nil {
			deps = []string{}
		}
		doc.Steps = append(doc.Steps, StepDoc{ID: s.ID, Phase: s.Phase, Deps: deps})
	}
	return doc, nil
}

// WriteJSON writes the document as indented JSON.
func (d Document) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// WriteText writes the plan grouped by phase, each step with its dependencies,
// then the levels that can run in parallel.
func (d Document) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Convergence plan for cluster %q: %d steps, %d edges, %d levels\n", d.Cluster, len(d.Steps), len(d.Edges), len(d.Levels))
	if r := d.LastRun; r != nil {
		fmt.Fprintf(&b, "Last run at the hub: run %d, %s, ended %s", r.Seq, r.Outcome, r.Ended.UTC().Format(time.RFC3339))
		if r.Actor != "" {
			fmt.Fprintf(&b, " by %s", r.Actor)
		}
		b.WriteString(" ([outcome] after each step it ran)\n")
	}
	for i, phase := range Phases {
		fmt.Fprintf(&b, "\n%d. %s\n", i+1, phase)
		n := 0
		for _, s := range d.Steps {
			if s.Phase != phase {
				continue
			}
			n++
			id := s.ID
			if s.Last != "" {
				id += " [" + s.Last + "]"
			}
			if len(s.Deps) == 0 {
				fmt.Fprintf(&b, "   %s\n", id)
			} else {
				fmt.Fprintf(&b, "   %s  <- %s\n", id, strings.Join(s.Deps, ", "))
			}
		}
		if n == 0 {
			b.WriteString("   (none for this spec)\n")
		}
	}
	fmt.Fprintf(&b, "\nLevels (steps in one level may run in parallel):\n")
	for i, l := range d.Levels {
		fmt.Fprintf(&b, "  %2d: %s\n", i, strings.Join(l, " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteDot writes a Graphviz digraph with one cluster per phase.
func (d Document) WriteDot(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n", "kubedos-"+d.Cluster)
	for i, phase := range Phases {
		fmt.Fprintf(&b, "  subgraph \"cluster_%d\" {\n    label=%q;\n", i, phase)
		for _, s := range d.Steps {
			if s.Phase == phase {
				fmt.Fprintf(&b, "    %q;\n", s.ID)
			}
		}
		b.WriteString("  }\n")
	}
	for _, e := range d.Edges {
		fmt.Fprintf(&b, "  %q -> %q;\n", e.From, e.To)
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
