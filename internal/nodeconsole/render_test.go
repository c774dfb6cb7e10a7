package nodeconsole

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hinshun/vt10x"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/wg"
)

var now = time.Date(2026, 12, 6, 3, 40, 0, 0, time.UTC)

const ekHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// quarantined is a node the hub refused, with every section full and
// values longer than any screen.
func quarantined() Snapshot {
	peers := []wg.PeerStatus{{Name: "master-1", LatestHandshake: now.Add(-12 * time.Second)}, {Name: "w-2"}}
	for i := range 20 {
		peers = append(peers, wg.PeerStatus{Name: "worker-with-a-long-name-" + string(rune('a'+i))})
	}
	var journal []api.LogEntry
	for i := range 30 {
		journal = append(journal, api.LogEntry{Time: now.Add(time.Duration(i-30) * time.Second), Message: "kubedosd: line " + string(rune('A'+i)) + strings.Repeat(" padding", 20)})
	}
	journal = append(journal, api.LogEntry{Time: now, Message: "kubedosd: the last line"})
	return Snapshot{
		Now: now, Node: "w-1", Role: "worker", Build: "3f2a9c1d", Slot: "a", Boot: "trial, 2 tries left", SecureBoot: "enabled", Kubedosd: "v0.9.0",
		Enrollment: "quarantined",
		Reason:     "PCR 7 does not match the prediction for build 3f2a9c1d: got 1a2b, want 3c4d; the Secure Boot db changed since the build was signed. " + strings.Repeat("more detail ", 40),
		EKHash:     ekHash, Hub: "10.20.0.10:7443", HubAnswered: now.Add(-3 * time.Second),
		Planes: []wg.Status{
			{Plane: "control", Interface: "kd-ctl", Up: true, Addresses: []string{"10.90.0.21/16"}, Peers: peers},
			{Plane: "storage", Interface: "kd-sto", Up: true, Addresses: []string{"10.91.0.21/16"}, Peers: peers[:1]},
			{Plane: "workload", Interface: "kd-wl", Error: "link not found"},
		},
		Checks: []api.HealthCheck{
			{Name: "enrolled", OK: true, Critical: true}, {Name: "tpm", OK: true, Critical: true},
			{Name: "certificate", Critical: true, Detail: "no node certificate"},
			{Name: "revocations", Critical: true, Detail: "revocation list never fetched from the hub"},
		},
		Journal: journal,
	}
}

// screen draws lines into a VT larger than the screen by a margin and
// returns the VT's rows, checking that nothing was drawn in the margin.
func screen(t *testing.T, lines []Line, cols, rows int) []string {
	t.Helper()
	const margin = 10
	vt := vt10x.New(vt10x.WithSize(cols+margin, rows+margin))
	if err := Draw(vt, lines, cols, true); err != nil {
		t.Fatal(err)
	}
	if vt.Title() != "" {
		t.Errorf("the screen set the terminal's title to %q", vt.Title())
	}
	out := make([]string, rows+margin)
	for y := range rows + margin {
		var b strings.Builder
		for x := range cols + margin {
			c := vt.Cell(x, y).Char
			if c == 0 {
				c = ' '
			}
			if (x >= cols || y >= rows) && c != ' ' {
				t.Fatalf("%d×%d: cell (%d,%d) outside the screen holds %q", cols, rows, x, y, c)
			}
			b.WriteRune(c)
		}
		out[y] = strings.TrimRight(b.String(), " ")
	}
	return out[:rows]
}

func contains(rows []string, s string) bool {
	for _, r := range rows {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

func TestRenderFitsAndShowsTheValues(t *testing.T) {
	for _, size := range []struct{ cols, rows int }{{80, 24}, {132, 43}, {60, 16}, {30, 8}, {80, 1}} {
		s := quarantined()
		lines := Render(s, size.cols, size.rows)
		if len(lines) != size.rows {
			t.Fatalf("%d×%d: %d lines", size.cols, size.rows, len(lines))
		}
		rows := screen(t, lines, size.cols, size.rows)
		if !strings.Contains(rows[size.rows-1], "No shell") {
			t.Errorf("%d×%d: the footer is not on the last row: %q", size.cols, size.rows, rows[size.rows-1])
		}
		if size.rows > 1 && !strings.HasPrefix(rows[0], " kubedos node w-1") {
			t.Errorf("%d×%d: the title scrolled away: %q", size.cols, size.rows, rows[0])
		}
		if size.cols < 80 || size.rows < 24 {
			continue
		}
		for _, want := range []string{"w-1 (worker)  kubedosd v0.9.0", "3f2a9c1d", "slot a (trial, 2 tries left)", "Secure Boot enabled",
			"Enrollment  quarantined", "hub says: PCR 7 does not match the prediction", ekHash,
			"10.20.0.10:7443, answered 3s ago", "master-1 12s", "w-2 never", "kd-wl", "error: link not found",
			"Health: NOT healthy", "x revocations: revocation list never fetched", "ok: enrolled, tpm",
			"03:40:00 kubedosd: the last line", "2026-12-06 03:40:00 UTC"} {
			if !contains(rows, want) {
				t.Errorf("%d×%d: %q is not on the screen:\n%s", size.cols, size.rows, want, strings.Join(rows, "\n"))
			}
		}
	}
}

func TestRenderEscapesHostileText(t *testing.T) {
	s := quarantined()
	s.Reason = "refused\x1b]0;owned\x07\x1b[2J\x1b[10;10Hgone\x9b31m \xff"
	s.Journal = []api.LogEntry{{Time: now, Message: "log\x1b[1;1Hover the title"}}
	rows := screen(t, Render(s, 80, 24), 80, 24)
	if !contains(rows, `refused\x1b]0;owned\x07\x1b[2J\x1b[10;10Hgone\x9b31m \xff`) {
		t.Errorf("the reason is not shown escaped:\n%s", strings.Join(rows, "\n"))
	}
	if !strings.HasPrefix(rows[0], " kubedos node w-1") {
		t.Errorf("the title was overwritten: %q", rows[0])
	}
}

func TestRenderStandaloneOffersDay0(t *testing.T) {
	s := Snapshot{Now: now, Node: "", Role: "worker", Enrollment: "no hub named", Day0: true, Healthy: true}
	rows := screen(t, Render(s, 80, 24), 80, 24)
	for _, want := range []string{"Hub         none named", "press F2 or s", "Planes", "  not joined"} {
		if !contains(rows, want) {
			t.Errorf("%q is not on the screen:\n%s", want, strings.Join(rows, "\n"))
		}
	}
}

func TestWrapAndFit(t *testing.T) {
	for _, tc := range []struct {
		s    string
		w, n int
		want []string
	}{
		{"short", 10, 3, []string{"short"}},
		{"one two three four", 9, 3, []string{"one two", "three", "four"}},
		{"one two three four five six", 9, 2, []string{"one two", "three fo~"}},
		{"abcdefghijkl", 5, 3, []string{"abcde", "fghij", "kl"}},
	} {
		got := wrap(tc.s, tc.w, tc.n)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrap(%q, %d, %d) = %q, want %q", tc.s, tc.w, tc.n, got, tc.want)
		}
	}
	if got := clean("a\tb\u0301c\u4e16d"); got != "a b?c?d" {
		t.Errorf("clean: %q", got)
	}
}

// A frame drawn over the previous one writes only the rows that changed,
// nothing when none did, and the screen ends up as if drawn whole.
func TestDrawChanged(t *testing.T) {
	const cols, rows = 60, 20
	before := Render(quarantined(), cols, rows)
	s := quarantined()
	s.Enrollment, s.Reason = "enrolled", ""
	after := Render(s, cols, rows)
	changed := 0
	for i := range after {
		if after[i] != before[i] {
			changed++
		}
	}
	if changed == 0 || changed == rows {
		t.Fatalf("%d of %d rows differ: the test needs some, not all", changed, rows)
	}
	vt := vt10x.New(vt10x.WithSize(cols, rows))
	if err := Draw(vt, before, cols, true); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := DrawChanged(io.MultiWriter(vt, &out), after, before, cols, false); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\x1b[2K"); n != changed {
		t.Errorf("%d rows written for %d changed", n, changed)
	}
	whole := vt10x.New(vt10x.WithSize(cols, rows))
	if err := Draw(whole, after, cols, true); err != nil {
		t.Fatal(err)
	}
	for y := range rows {
		for x := range cols {
			if a, b := vt.Cell(x, y).Char, whole.Cell(x, y).Char; a != b {
				t.Fatalf("cell (%d,%d): %q drawn by changes, %q drawn whole", x, y, a, b)
			}
		}
	}
	out.Reset()
	if err := DrawChanged(&out, after, after, cols, false); err != nil || out.Len() != 0 {
		t.Errorf("an unchanged frame wrote %q (%v)", out.String(), err)
	}
}
