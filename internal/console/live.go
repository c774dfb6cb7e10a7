package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// maxAttention bounds the nodes the live fragment lists by name.
const maxAttention = 100

// Live fragments: the event name a page subscribes to (/events?on=NAME,…),
// the page template that defines it and how its data is made from the
// hub's node list.
var fragments = []struct {
	event, page, tmpl string
	data              func(c *Console, nodes []api.Node) any
}{
	{"overview", "overview", "live", func(c *Console, nodes []api.Node) any { return summarize(nodes, c.cfg.Now()) }},
	{"upgrades", "upgrades", "upgradeslive", func(c *Console, nodes []api.Node) any { return c.upgradesView(nodes) }},
}

// live pushes fragments of pages (server-sent events) to the open pages
// that show them when they change; one poller of the hub serves every page.
type live struct {
	c *Console

	mu    sync.Mutex
	frags map[string][]byte // event -> the fragment last rendered
	sums  map[string][sha256.Size]byte
	subs  map[*watcher]struct{}
}

// watcher is one open page: the events it wants and what it was sent.
type watcher struct {
	// s is the page's session: the poller reads as one of the watchers'
	// operators, and a page whose session ends is sent nothing more.
	s    *session
	want map[string]bool
	sent map[string][sha256.Size]byte
	// wake is poked when a fragment changed; a slow page gets the newest.
	wake chan struct{}
}

func newLive(c *Console) *live {
	return &live{c: c, frags: map[string][]byte{}, sums: map[string][sha256.Size]byte{}, subs: map[*watcher]struct{}{}}
}

func (l *live) run(ctx context.Context) {
	t := time.NewTicker(l.c.cfg.Poll)
	defer t.Stop()
	for {
		// Only open pages need the hub asked. A hub that does not answer
		// leaves the pages as they were; the next tick tries again.
		if h := l.anyHub(); h != nil {
			_ = l.refresh(ctx, h)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// anyHub is the hub as the operator of one open page (nil: none open).
// Every operator may read the node list, so what one reads, all may see.
func (l *live) anyHub() Hub {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.subs {
		return w.s.op.Hub
	}
	return nil
}

// refresh renders the fragments from the hub's node list, read through h,
// and wakes the pages whose fragments changed.
func (l *live) refresh(ctx context.Context, h Hub) error {
	res, err := h.ListNodes(ctx)
	if err != nil {
		return err
	}
	out := map[string][]byte{}
	for _, f := range fragments {
		var b bytes.Buffer
		if err := l.c.pages[f.page].ExecuteTemplate(&b, f.tmpl, f.data(l.c, res.Nodes)); err != nil {
			return err
		}
		out[f.event] = b.Bytes()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := map[string]bool{}
	for ev, frag := range out {
		sum := sha256.Sum256(frag)
		if old, ok := l.sums[ev]; ok && old == sum {
			continue
		}
		l.frags[ev], l.sums[ev], changed[ev] = frag, sum, true
	}
	for w := range l.subs {
		for ev := range changed {
			if w.want[ev] {
				wake(w.wake)
				break
			}
		}
	}
	return nil
}

// poke refreshes soon without waiting for the caller: an upgrade's
// progress is shown at once, not at the next poll.
func (l *live) poke(h Hub) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.refresh(ctx, h)
	}()
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// pending is what w has not been sent yet, in the order of fragments.
func (l *live) pending(w *watcher) (events []string, frags [][]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range fragments {
		sum, ok := l.sums[f.event]
		if !ok || !w.want[f.event] || w.sent[f.event] == sum {
			continue
		}
		w.sent[f.event] = sum
		events, frags = append(events, f.event), append(frags, l.frags[f.event])
	}
	return events, frags
}

func (l *live) serve(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	on := r.URL.Query().Get("on")
	if on == "" {
		on = "overview"
	}
	s := who(r)
	sub := &watcher{s: s, want: map[string]bool{}, sent: map[string][sha256.Size]byte{}, wake: make(chan struct{}, 1)}
	for _, ev := range strings.Split(on, ",") {
		for _, f := range fragments {
			if f.event == ev {
				sub.want[ev] = true
			}
		}
	}
	if len(sub.want) == 0 {
		http.Error(w, "no such live fragment", http.StatusNotFound)
		return
	}
	l.mu.Lock()
	l.subs[sub] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs, sub)
		l.mu.Unlock()
	}()
	wake(sub.wake) // what was rendered already
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	// Nobody may have watched for a while: what the page got may be old.
	_ = l.refresh(r.Context(), s.op.Hub)
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			// A session that ended (expired, its certificate revoked)
			// watches no more.
			if l.c.valid(r.Context(), s) != nil {
				return
			}
			// A comment keeps proxies and the browser from timing out.
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-sub.wake:
			if l.c.valid(r.Context(), s) != nil {
				return
			}
			events, frags := l.pending(sub)
			for i := range events {
				if err := writeEvent(w, events[i], frags[i]); err != nil {
					return
				}
			}
		}
		fl.Flush()
	}
}

// writeEvent writes one server-sent event; each line of data gets its own
// data: field, as the format wants.
func writeEvent(w http.ResponseWriter, event string, data []byte) error {
	var b strings.Builder
	fmt.Fprintf(&b, "event: %s\n", event)
	for _, line := range strings.Split(string(data), "\n") {
		b.WriteString("data: ")
		b.WriteString(strings.TrimSuffix(line, "\r"))
		b.WriteString("\n")
	}
	b.WriteString("\n")
	_, err := w.Write([]byte(b.String()))
	return err
}

func pathEscape(s string) string { return url.PathEscape(s) }

var funcs = template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"path": pathEscape,
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	// short is the start of a digest, for tables that have the whole
	// elsewhere.
	"short": func(s string) string {
		if len(s) <= 16 {
			return s
		}
		return s[:16] + "…"
	},
	"inc": func(i int) int { return i + 1 },
	"attention": func(nodes []api.Node) []api.Node {
		var out []api.Node
		for _, n := range nodes {
			switch n.State {
			case api.NodeQuarantined, api.NodeRevoked, api.NodeFenced:
				if len(out) < maxAttention {
					out = append(out, n)
				}
			}
		}
		return out
	},
	"reasonShort": func(r *api.Refusal) string {
		if r == nil {
			return ""
		}
		return clip(r.Check+": "+strings.Join(strings.Fields(r.Detail), " "), 120)
	},
}
