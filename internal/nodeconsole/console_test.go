package nodeconsole

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hinshun/vt10x"
	"github.com/kubedos/kubedos/internal/nodeid"
)

// vtTerm is a Terminal on a VT emulator: keys come from a pipe, the size
// can change under the console as a VT's does.
type vtTerm struct {
	mu   sync.Mutex
	vt   vt10x.Terminal
	keys *io.PipeReader
	cols int
	rows int
}

func newVTTerm(cols, rows int) (*vtTerm, *io.PipeWriter) {
	r, w := io.Pipe()
	return &vtTerm{vt: vt10x.New(vt10x.WithSize(cols, rows)), keys: r, cols: cols, rows: rows}, w
}

func (v *vtTerm) Read(b []byte) (int, error) { return v.keys.Read(b) }
func (v *vtTerm) Close() error               { return v.keys.Close() }
func (v *vtTerm) Write(b []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.vt.Write(b)
}
func (v *vtTerm) Size() (int, int) { v.mu.Lock(); defer v.mu.Unlock(); return v.cols, v.rows }

func (v *vtTerm) resize(cols, rows int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.vt.Resize(cols, rows)
	v.cols, v.rows = cols, rows
}

// rows is the screen as text, one string a row.
func (v *vtTerm) screen() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, v.rows)
	for y := range v.rows {
		var b strings.Builder
		for x := range v.cols {
			c := v.vt.Cell(x, y).Char
			if c == 0 {
				c = ' '
			}
			b.WriteRune(c)
		}
		out[y] = strings.TrimRight(b.String(), " ")
	}
	return out
}

// waitFor polls the screen until ok holds, or fails after 5 s.
func (v *vtTerm) waitFor(t *testing.T, what string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows := v.screen()
		if ok(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not on the screen:\n%s", what, strings.Join(rows, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasText(s string) func([]string) bool { return func(r []string) bool { return contains(r, s) } }

// runConsole runs the console on term until the test ends.
func runConsole(t *testing.T, cfg Config) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return done
}

func TestRunRedrawsOnChangeAndResize(t *testing.T) {
	term, keys := newVTTerm(80, 24)
	t.Cleanup(func() { keys.Close() })
	var mu sync.Mutex
	snap := quarantined()
	changed := make(chan struct{}, 1)
	runConsole(t, Config{Term: term, Changed: changed, Every: time.Hour, Snapshot: func(context.Context) Snapshot {
		mu.Lock()
		defer mu.Unlock()
		return snap
	}})
	term.waitFor(t, "first frame", hasText("Enrollment  quarantined"))

	// A change in the agent is on the screen without waiting for Every.
	mu.Lock()
	snap.Enrollment, snap.Reason = "enrolled", ""
	mu.Unlock()
	changed <- struct{}{}
	term.waitFor(t, "after a change", hasText("Enrollment  enrolled"))

	// A larger screen: the footer moves to its last row, the journal grows.
	term.resize(100, 40)
	changed <- struct{}{}
	rows := term.waitFor(t, "after growing to 100×40", func(r []string) bool { return strings.Contains(r[39], "No shell") })
	if !contains(rows, "kubedosd: line K") {
		t.Errorf("100×40 shows no more of the journal:\n%s", strings.Join(rows, "\n"))
	}
	// Smaller again: nothing left of the larger frame.
	term.resize(80, 24)
	changed <- struct{}{}
	rows = term.waitFor(t, "after shrinking to 80×24", func(r []string) bool {
		return strings.HasPrefix(r[0], " kubedos node w-1") && strings.Contains(r[23], "No shell")
	})
	if contains(rows, "kubedosd: line K") {
		t.Errorf("80×24 still shows the journal of 100×40:\n%s", strings.Join(rows, "\n"))
	}
}

func TestRunDay0Form(t *testing.T) {
	term, keys := newVTTerm(80, 24)
	t.Cleanup(func() { keys.Close() })
	saved := make(chan nodeid.Identity, 1)
	failOnce := true
	runConsole(t, Config{Term: term, Every: time.Hour, Hostname: "bm-7",
		Snapshot: func(context.Context) Snapshot {
			return Snapshot{Now: now, Role: "worker", Enrollment: "no hub named", Day0: true, Healthy: true}
		},
		Setup: func(_ context.Context, id nodeid.Identity) error {
			if failOnce {
				failOnce = false
				return errors.New("state partition is read-only")
			}
			saved <- id
			return nil
		}})
	term.waitFor(t, "the offer", hasText("press F2 or s"))
	type_ := func(s string) {
		t.Helper()
		if _, err := keys.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	type_("\x1b[[B") // F2 on the Linux VT
	term.waitFor(t, "the form", hasText("Day 0 setup"))
	term.waitFor(t, "the hostname prefilled", hasText("> Node name    bm-7"))

	// A bad address, a gateway outside it, a hub without a port.
	type_("\r10.20.0.31\r10.30.0.1\r10.20.0.10\r")
	term.waitFor(t, "the address's error", hasText("want an IPv4 address with the LAN's prefix length"))
	term.waitFor(t, "the hub's error", hasText("want host:port"))
	// Fix the address: the gateway is now checked against it.
	type_("/24\x1b[B\x1b[B\r")
	term.waitFor(t, "the gateway's error", hasText("not an address inside 10.20.0.0/24"))
	type_("\x15" + "10.20.0.1\r\x15" + "10.20.0.10:7443\r")
	term.waitFor(t, "the failed save", hasText("not saved: state partition is read-only"))
	type_("\r")
	select {
	case id := <-saved:
		want := nodeid.Identity{Name: "bm-7", Address: netip.MustParsePrefix("10.20.0.31/24"), Gateway: netip.MustParseAddr("10.20.0.1"), Hub: "10.20.0.10:7443"}
		if id != want {
			t.Errorf("saved %+v, want %+v", id, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the form never saved")
	}
	term.waitFor(t, "back to the status", hasText("Enrollment  no hub named"))
}

func TestRunNoFormWithoutSetup(t *testing.T) {
	term, keys := newVTTerm(80, 24)
	t.Cleanup(func() { keys.Close() })
	runConsole(t, Config{Term: term, Every: time.Hour, Snapshot: func(context.Context) Snapshot {
		return Snapshot{Now: now, Enrollment: "no hub named", Day0: true}
	}})
	term.waitFor(t, "status", hasText("Enrollment  no hub named"))
	if contains(term.screen(), "press F2") {
		t.Error("the form is offered without a Setup")
	}
	if _, err := keys.Write([]byte("s\x1b[[B")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if contains(term.screen(), "Day 0 setup") {
		t.Error("the form opened without a Setup")
	}
}

func TestRunEndsWhenInputCloses(t *testing.T) {
	term, keys := newVTTerm(80, 24)
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Config{Term: term, Every: time.Hour, Snapshot: func(context.Context) Snapshot { return Snapshot{} }})
	}()
	term.waitFor(t, "status", hasText("No shell"))
	keys.CloseWithError(io.ErrUnexpectedEOF)
	select {
	case err := <-done:
		if !errors.Is(err, ErrInputClosed) {
			t.Errorf("got %v, want ErrInputClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end when its input closed")
	}
}

func TestParseKeys(t *testing.T) {
	got := ParseKeys([]byte("a\x1b[A\x1bOQ\x1b[12~\x1b[[B\x1b[Z\x1b[5~\t\r\x7f\x0c\x15\x01\x1b"))
	want := []Key{{KeyRune, 'a'}, {Kind: KeyUp}, {Kind: KeyF2}, {Kind: KeyF2}, {Kind: KeyF2}, {Kind: KeyBackTab},
		{Kind: KeyTab}, {Kind: KeyEnter}, {Kind: KeyBackspace}, {Kind: KeyRedraw}, {Kind: KeyKill}, {Kind: KeyEsc}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("key %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestRunWaitsForAKeyOnTheSerialConsole(t *testing.T) {
	term, keys := newVTTerm(80, 24)
	t.Cleanup(func() { keys.Close() })
	runConsole(t, Config{Term: term, Every: 10 * time.Millisecond, WaitForKey: true, Snapshot: func(context.Context) Snapshot {
		return Snapshot{Now: now, Node: "w-1", Enrollment: "enrolled"}
	}})
	term.waitFor(t, "the hint", hasText(WaitLine))
	time.Sleep(50 * time.Millisecond) // five refresh periods
	if contains(term.screen(), "Enrollment") {
		t.Fatal("the screen was drawn before a key was pressed")
	}
	if _, err := keys.Write([]byte("\r")); err != nil {
		t.Fatal(err)
	}
	term.waitFor(t, "the status after Enter", hasText("Enrollment  enrolled"))
}

// countingTerm counts the writes that reach the terminal.
type countingTerm struct {
	*vtTerm
	writes atomic.Int32
}

func (c *countingTerm) Write(b []byte) (int, error) { c.writes.Add(1); return c.vtTerm.Write(b) }

// Frames that change nothing write nothing, but one in wholeEvery is
// drawn whole (whatever else wrote on the terminal goes).
func TestRunWritesOnlyChanges(t *testing.T) {
	vt, keys := newVTTerm(80, 24)
	t.Cleanup(func() { keys.Close() })
	term := &countingTerm{vtTerm: vt}
	var frames atomic.Int32
	snap := quarantined()
	runConsole(t, Config{Term: term, Every: time.Millisecond, Snapshot: func(context.Context) Snapshot {
		frames.Add(1)
		return snap
	}})
	for frames.Load() < 4*wholeEvery {
		time.Sleep(time.Millisecond)
	}
	n, w := int(frames.Load()), int(term.writes.Load())
	if max := n/wholeEvery + 2; w > max || w < n/wholeEvery {
		t.Errorf("%d writes for %d unchanged frames, want %d to %d", w, n, n/wholeEvery, max)
	}
	if !contains(vt.screen(), "Enrollment  quarantined") {
		t.Errorf("not on the screen:\n%s", strings.Join(vt.screen(), "\n"))
	}
}
