// The convergence plan as a graph: laid out here, drawn as inline SVG by
// the page's template (html/template escapes it as it does the page), so
// the browser needs no script and nothing from outside.

package console

import (
	"context"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/plan"
)

// Runs reads the hub's convergence runs: *api.RunsClient.
type Runs interface {
	ListRuns(ctx context.Context, limit int) (*api.ListRunsResponse, error)
}

// Layout of the graph, in SVG user units (pixels at 100 %).
const (
	graphMargin = 12
	boxH        = 26
	gapX        = 46
	gapY        = 10
	charW       = 7.2 // monospace 12 px
	maxLabel    = 34  // characters shown in a box; the title has the rest
)

// PlanView is the plan page's data.
type PlanView struct {
	Doc      plan.Document
	Graph    Graph
	Steps    []PlanStep
	RunNote  string // why the last run is not shown
	Outcomes []string
}

// PlanStep is one step with its last run's record.
type PlanStep struct {
	plan.StepDoc
	Run *api.RunStep
}

// Graph is the laid-out plan.
type Graph struct {
	Width, Height int
	Boxes         []Box
	Edges         []Line
}

// Box is one step.
type Box struct {
	X, Y, W, H   int
	TextX, TextY int
	Label, Title string
	Class        string // o-<outcome>, o-none without a last run
}

// Line is one dependency, as an SVG path.
type Line struct {
	D     string
	Class string
}

// layout places each level in a column, its steps one under another, and
// draws each dependency from the right of the step depended on to the left
// of the one that needs it.
func layout(doc plan.Document, runs map[string]*api.RunStep) Graph {
	var g Graph
	type pos struct{ x, y, w int }
	at := map[string]pos{}
	byID := map[string]plan.StepDoc{}
	for _, s := range doc.Steps {
		byID[s.ID] = s
	}
	x := graphMargin
	for _, level := range doc.Levels {
		w := 0
		for _, id := range level {
			w = max(w, int(float64(min(utf8.RuneCountInString(id), maxLabel))*charW)+16)
		}
		y := graphMargin
		for _, id := range level {
			s := byID[id]
			label := id
			if utf8.RuneCountInString(label) > maxLabel {
				label = string([]rune(label)[:maxLabel-1]) + "…"
			}
			title := fmt.Sprintf("%s (%s)", s.ID, s.Phase)
			class := "o-none"
			if s.Last != "" {
				title += ": last run " + s.Last
				class = "o-" + s.Last
			}
			if r := runs[id]; r != nil && r.Error != "" {
				title += ": " + clip(r.Error, 300)
			}
			g.Boxes = append(g.Boxes, Box{X: x, Y: y, W: w, H: boxH, TextX: x + 8, TextY: y + boxH/2 + 4, Label: label, Title: title, Class: class})
			at[id] = pos{x, y, w}
			g.Height = max(g.Height, y+boxH+graphMargin)
			y += boxH + gapY
		}
		x += w + gapX
	}
	g.Width = max(x-gapX+graphMargin, 2*graphMargin)
	for _, e := range doc.Edges {
		// e.To depends on e.From: the arrow runs from e.From to e.To.
		from, okF := at[e.From]
		to, okT := at[e.To]
		if !okF || !okT {
			continue
		}
		x1, y1 := from.x+from.w, from.y+boxH/2
		x2, y2 := to.x, to.y+boxH/2
		mid := (x1 + x2) / 2
		cls := "edge"
		if s := byID[e.To]; s.Last == "skipped" || s.Last == "cancelled" {
			cls = "edge edge-blocked"
		}
		g.Edges = append(g.Edges, Line{D: fmt.Sprintf("M%d %d C%d %d %d %d %d %d", x1, y1, mid, y1, mid, y2, x2, y2), Class: cls})
	}
	return g
}

func (c *Console) planPage(w http.ResponseWriter, r *http.Request) {
	p := c.base(r, "Convergence plan")
	if c.cfg.Spec == nil {
		c.render(w, "plan", p, nil)
		return
	}
	g, err := plan.Build(c.cfg.Spec)
	if err != nil {
		p.Error = clip(err.Error(), maxAuditField)
		c.render(w, "plan", p, nil)
		return
	}
	doc, err := plan.NewDocument(c.cfg.Spec.Metadata.Name, g)
	if err != nil {
		p.Error = clip(err.Error(), maxAuditField)
		c.render(w, "plan", p, nil)
		return
	}
	v := PlanView{Outcomes: []string{"changed", "unchanged", "drifted", "failed", "skipped", "cancelled"}}
	runs := map[string]*api.RunStep{}
	switch {
	case op(r).Runs == nil:
		v.RunNote = "the console has no client of the hub's runs"
	default:
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		res, err := op(r).Runs.ListRuns(ctx, 1)
		cancel()
		switch {
		case err != nil:
			v.RunNote = "the hub did not give its last run: " + clip(err.Error(), 500)
		case len(res.Runs) == 0:
			v.RunNote = "the hub has recorded no convergence run yet (kubedos converge records one)"
		default:
			run := &res.Runs[0]
			if !cluster.MarkLastRun(&doc, run) {
				v.RunNote = fmt.Sprintf("the hub's last run is of cluster %q, not %q", clip(run.Cluster, 200), doc.Cluster)
				break
			}
			for i := range run.Steps {
				st := run.Steps[i]
				st.Error, st.Diff, st.Cause = clip(st.Error, maxAuditField), clip(st.Diff, maxAuditField), clip(st.Cause, maxAuditField)
				runs[st.ID] = &st
			}
		}
	}
	v.Doc = doc
	v.Graph = layout(doc, runs)
	for _, s := range doc.Steps {
		v.Steps = append(v.Steps, PlanStep{StepDoc: s, Run: runs[s.ID]})
	}
	c.render(w, "plan", p, v)
}
