package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/cluster"
)

// progress shows long work: a line rewritten in place on a terminal, plain
// timestamped lines elsewhere (CI logs, pipes).
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	start time.Time
	last  int
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, start: time.Now()}
}

// Update shows a transient status (overwritten on a terminal, printed at
// most every few steps elsewhere by the caller's choice of when to call Step).
func (p *progress) Update(format string, args ...any) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("[%5.1fs] "+format, append([]any{time.Since(p.start).Seconds()}, args...)...)
	pad := ""
	if n := p.last - len(line); n > 0 {
		pad = fmt.Sprintf("%*s", n, "")
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.last = len(line)
}

// Step records a milestone: its own line everywhere.
func (p *progress) Step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last > 0 {
		fmt.Fprint(p.w, "\r\033[K")
		p.last = 0
	}
	fmt.Fprintf(p.w, "[%5.1fs] "+format+"\n", append([]any{time.Since(p.start).Seconds()}, args...)...)
}

// Event renders a cluster event: progress overwritten in place, every
// other event on its own line.
func (p *progress) Event(e cluster.Event) {
	if _, ok := e.(cluster.Transient); ok {
		p.Update("%s", e)
		return
	}
	p.Step("%s", e)
}

// jsonEvents writes each milestone event as one JSON object a line:
// {"at": seconds since start, "event": its type, "text": the line a
// terminal shows, "data": its fields}. Progress-only events are left out:
// a transfer's would flood the stream.
type jsonEvents struct {
	mu    sync.Mutex
	enc   *json.Encoder
	start time.Time
}

func (j *jsonEvents) Event(e cluster.Event) {
	if _, ok := e.(cluster.Transient); ok {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(struct {
		At    float64       `json:"at"`
		Event string        `json:"event"`
		Text  string        `json:"text"`
		Data  cluster.Event `json:"data"`
	}{time.Since(j.start).Seconds(), reflect.TypeOf(e).Name(), e.String(), e})
}

// events renders cluster events on stderr in the output format: text
// progress, or JSON lines under --output json (stdout keeps the result).
func (g *globals) events() cluster.Events {
	if g.output == OutputJSON {
		return &jsonEvents{enc: json.NewEncoder(g.stderr), start: time.Now()}
	}
	return newProgress(g.stderr)
}
