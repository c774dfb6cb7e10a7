// Line charts laid out here and drawn as inline SVG by the page's template
// (html/template escapes every label as it does the page): the browser runs
// no script and fetches nothing from outside, so the pages work air-gapped.

package dashboards

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Chart geometry, in SVG user units (pixels at 100 %).
const (
	chartW     = 960
	chartH     = 240
	padLeft    = 64 // y labels
	padRight   = 12
	padTop     = 10
	padBottom  = 24 // x labels
	yTicks     = 5
	xTickCount = 6
)

// MaxSeries bounds the lines of one chart: a query by node over a large
// fleet would draw an unreadable tangle and a page of megabytes. The series
// with the highest peaks are drawn; the chart says how many were left out.
const MaxSeries = 12

// Bounds on label text, which nodes influence (a node's name, a peer's).
const (
	maxLegend = 80  // characters of a legend entry
	maxTitle  = 256 // characters of a tooltip
	maxCell   = 128 // characters of a table cell
)

// Chart is a laid-out line chart.
type Chart struct {
	W, H     int
	X0, X1   int // plot area, left and right
	Y0, Y1   int // plot area, top and bottom
	TickEnd  int // bottom of the x axis' tick marks
	Lines    []Line
	YTicks   []Tick
	XTicks   []Tick
	Hidden   int // series not drawn (over MaxSeries)
	Unit     Unit
	From, To time.Time
	Step     time.Duration
}

// Line is one series.
type Line struct {
	D      string // SVG path
	Class  string // c0 … c11: the colour
	Legend string // bounded
	Title  string // bounded; the full label set
	Last   string // the latest value, formatted
}

// Tick is an axis mark: its position on its axis, and its label and where
// the label goes.
type Tick struct {
	Pos    int
	LX, LY int
	Label  string
}

// named is a series with the name its legend shows.
type named struct {
	Series
	legend, title string
	peak          float64
	set           int // which query
}

// lineChart lays out the series of a panel's queries over [from, to].
func lineChart(sets [][]Series, legends []string, unit Unit, from, to time.Time, step time.Duration) *Chart {
	var all []named
	for i, set := range sets {
		for _, s := range set {
			n := named{Series: s, set: i, title: clip(labelString(s.Labels), maxTitle), peak: math.Inf(-1)}
			n.legend = legendOf(legends[i], s.Labels, len(set))
			for _, p := range s.Points {
				if finite(p.V) && p.V > n.peak {
					n.peak = p.V
				}
			}
			all = append(all, n)
		}
	}
	if len(all) == 0 {
		return nil
	}
	// Series in query order, then by name, so colours stay put across
	// reloads; over MaxSeries, the highest peaks are kept.
	c := &Chart{W: chartW, H: chartH, X0: padLeft, X1: chartW - padRight, Y0: padTop, Y1: chartH - padBottom, TickEnd: chartH - padBottom + 4, Unit: unit, From: from, To: to, Step: step}
	byName := func(i, j int) bool {
		if all[i].set != all[j].set {
			return all[i].set < all[j].set
		}
		return all[i].legend < all[j].legend
	}
	sort.SliceStable(all, byName)
	if len(all) > MaxSeries {
		c.Hidden = len(all) - MaxSeries
		sort.SliceStable(all, func(i, j int) bool { return all[i].peak > all[j].peak })
		all = all[:MaxSeries]
		sort.SliceStable(all, byName)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, n := range all {
		for _, p := range n.Points {
			if finite(p.V) {
				lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
			}
		}
	}
	if math.IsInf(lo, 1) { // no finite value at all
		lo, hi = 0, 1
	}
	lo, hi, tick := niceRange(lo, hi)
	for v := lo; v <= hi+tick/2; v += tick {
		y := c.y(v, lo, hi)
		c.YTicks = append(c.YTicks, Tick{Pos: y, LX: c.X0 - 6, LY: y + 4, Label: format(unit, v)})
	}
	c.XTicks = timeTicks(from, to, func(t time.Time) int { return c.x(t) })
	for i := range c.XTicks {
		c.XTicks[i].LX, c.XTicks[i].LY = c.XTicks[i].Pos, c.Y1+16
	}
	for i, n := range all {
		c.Lines = append(c.Lines, Line{D: c.path(n.Points, lo, hi), Class: "c" + strconv.Itoa(i), Legend: n.legend, Title: n.title, Last: lastValue(unit, n.Points)})
	}
	return c
}

func (c *Chart) x(t time.Time) int {
	span := c.To.Sub(c.From)
	if span <= 0 {
		return c.X0
	}
	f := float64(t.Sub(c.From)) / float64(span)
	return c.X0 + int(math.Round(f*float64(c.X1-c.X0)))
}

func (c *Chart) y(v, lo, hi float64) int {
	f := (v - lo) / (hi - lo)
	return c.Y1 - int(math.Round(f*float64(c.Y1-c.Y0)))
}

// path draws the points, lifting the pen over a gap (a step missing, or a
// value that is not a number) so a target that was down is not bridged.
func (c *Chart) path(pts []Point, lo, hi float64) string {
	var b strings.Builder
	gap := c.Step * 3 / 2
	run := 0 // points in the current stroke
	lift := func() {
		if run == 1 { // a lone point draws nothing as a path: give it a tick
			b.WriteString("h1")
		}
		run = 0
	}
	for i, p := range pts {
		if !finite(p.V) || p.T.Before(c.From) || p.T.After(c.To) {
			lift()
			continue
		}
		if run > 0 && gap > 0 && p.T.Sub(pts[i-1].T) > gap {
			lift()
		}
		cmd := 'L'
		if run == 0 {
			cmd = 'M'
		}
		fmt.Fprintf(&b, "%c%d %d", cmd, c.x(p.T), c.y(p.V, lo, hi))
		run++
	}
	lift()
	return b.String()
}

// niceRange widens [lo, hi] to round ticks (1, 2 or 5 times a power of
// ten), from 0 when every value is positive: counts read best from zero.
func niceRange(lo, hi float64) (float64, float64, float64) {
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / (yTicks - 1)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			step = m * mag
			break
		}
	}
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, step
}

// Time tick spacings, the first giving at most xTickCount ticks wins.
var tickSpans = []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 48 * time.Hour}

// timeTicks marks round times in UTC (the page says so).
func timeTicks(from, to time.Time, pos func(time.Time) int) []Tick {
	span := to.Sub(from)
	every := tickSpans[len(tickSpans)-1]
	for _, d := range tickSpans {
		if span/d <= xTickCount {
			every = d
			break
		}
	}
	layout := "15:04"
	if every >= 24*time.Hour {
		layout = "Jan 2"
	} else if span > 24*time.Hour {
		layout = "Jan 2 15:04"
	}
	var out []Tick
	for t := from.UTC().Truncate(every); !t.After(to); t = t.Add(every) {
		if t.Before(from) {
			continue
		}
		out = append(out, Tick{Pos: pos(t), Label: t.Format(layout)})
	}
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func lastValue(unit Unit, pts []Point) string {
	for i := len(pts) - 1; i >= 0; i-- {
		if finite(pts[i].V) {
			return format(unit, pts[i].V)
		}
	}
	return "–"
}

// legendOf names a series: the query's legend, its labels, or both.
func legendOf(legend string, labels map[string]string, n int) string {
	l := labelString(labels)
	switch {
	case legend != "" && (n == 1 || l == ""):
		return legend
	case legend != "":
		return clip(legend+" "+l, maxLegend)
	case l == "":
		return "value"
	}
	return clip(l, maxLegend)
}

// labelString is a series' labels, sorted, without the metric name; a
// lone label shows as its value alone.
func labelString(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 1 {
		return labels[keys[0]]
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(labels[k])
	}
	return strings.Join(parts, ", ")
}

// clip bounds s to max bytes of valid UTF-8, marking the cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return strings.ToValidUTF8(s, "�")
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}

// format writes v in unit.
func format(unit Unit, v float64) string {
	if !finite(v) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	switch unit {
	case UnitSeconds:
		return seconds(v)
	case UnitBytesPerSec:
		return byteSize(v) + "/s"
	case UnitPerMinute:
		return number(v) + "/min"
	}
	return number(v)
}

// number is a whole v exactly (a count of nodes is read exactly), any
// other to about three significant digits.
func number(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func seconds(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0 s"
	case a < 1e-3:
		return number(v*1e6) + " µs"
	case a < 1:
		return number(v*1e3) + " ms"
	case a < 120:
		return number(v) + " s"
	case a < 7200:
		return number(math.Round(v/60)) + " min"
	case a < 172800:
		return number(math.Round(v/360)/10) + " h"
	}
	return number(math.Round(v/8640)/10) + " d"
}

func byteSize(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return number(math.Round(v)) + " B"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}
