package dashboards

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		unit Unit
		v    float64
		want string
	}{
		{UnitCount, 16, "16"},
		{UnitCount, 10000, "10000"},
		{UnitCount, 0.25, "0.25"},
		{UnitCount, 1234.5, "1.2k"},
		{UnitCount, math.NaN(), "NaN"},
		{UnitSeconds, 0.0042, "4.2 ms"},
		{UnitSeconds, 0.15000000000000002, "150 ms"},
		{UnitSeconds, 21.000001, "21 s"},
		{UnitSeconds, 0.00003, "30 µs"},
		{UnitSeconds, 75, "75 s"},
		{UnitSeconds, 600, "10 min"},
		{UnitSeconds, 3 * 3600, "3 h"},
		{UnitSeconds, 3 * 86400, "3 d"},
		{UnitBytesPerSec, 512, "512 B/s"},
		{UnitBytesPerSec, 3 << 20, "3.0 MiB/s"},
		{UnitPerMinute, 6, "6/min"},
	} {
		if got := format(tt.unit, tt.v); got != tt.want {
			t.Errorf("format(%s, %g) = %q, want %q", tt.unit, tt.v, got, tt.want)
		}
	}
}

func TestNiceRange(t *testing.T) {
	for _, tt := range []struct{ lo, hi, wantLo, wantHi, wantStep float64 }{
		{3, 3, 0, 3, 1},   // a flat line, from zero
		{0, 0, 0, 1, 0.5}, // all zero
		{0, 16, 0, 20, 5},
		{-3, 7, -5, 10, 5},
		{0.001, 0.0042, 0, 0.006, 0.002},
	} {
		lo, hi, step := niceRange(tt.lo, tt.hi)
		if math.Abs(lo-tt.wantLo) > 1e-9 || math.Abs(hi-tt.wantHi) > 1e-9 || math.Abs(step-tt.wantStep) > 1e-9 {
			t.Errorf("niceRange(%g, %g) = %g, %g, %g; want %g, %g, %g", tt.lo, tt.hi, lo, hi, step, tt.wantLo, tt.wantHi, tt.wantStep)
		}
	}
}

// A missing step or a NaN lifts the pen; a lone point is still visible.
func TestPathGaps(t *testing.T) {
	from := now.Add(-10 * time.Minute)
	pts := []Point{{from, 1}, {from.Add(time.Minute), 2}, {from.Add(5 * time.Minute), 2}, {from.Add(6 * time.Minute), math.NaN()}, {from.Add(7 * time.Minute), 1}}
	c := lineChart([][]Series{{{Labels: map[string]string{"a": "b"}, Points: pts}}}, []string{""}, UnitCount, from, now, time.Minute)
	d := c.Lines[0].D
	if want := "M64 113L152 10M506 10h1M683 113h1"; d != want {
		t.Errorf("path %q, want %q: three strokes, the lone points ticked", d, want)
	}
	if len(c.XTicks) < 2 || c.XTicks[0].Label != "11:50" {
		t.Errorf("x ticks %+v", c.XTicks)
	}
	if c.YTicks[0].Label != "0" || c.YTicks[len(c.YTicks)-1].Label != "2" {
		t.Errorf("y ticks %+v", c.YTicks)
	}
}

func TestLegend(t *testing.T) {
	for _, tt := range []struct {
		legend string
		labels map[string]string
		n      int
		want   string
	}{
		{"", map[string]string{"state": "enrolled", "__name__": "x"}, 2, "enrolled"},
		{"", map[string]string{"kind": "files", "node": "w-1"}, 2, `kind="files", node="w-1"`},
		{"p90", map[string]string{}, 1, "p90"},
		{"p90", map[string]string{"le": "1"}, 2, "p90 1"},
		{"", nil, 1, "value"},
		{"", map[string]string{"node": strings.Repeat("é", 100)}, 1, strings.Repeat("é", 40) + "…"},
	} {
		if got := legendOf(tt.legend, tt.labels, tt.n); got != tt.want {
			t.Errorf("legendOf(%q, %v) = %q, want %q", tt.legend, tt.labels, got, tt.want)
		}
	}
	// A cut inside a rune leaves valid UTF-8.
	if got := clip("aé", 2); got != "a…" {
		t.Errorf("clip = %q", got)
	}
}
