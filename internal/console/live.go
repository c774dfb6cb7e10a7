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

// live pushes the overview's counts to open pages (server-sent events)
// when the hub's node list changes; one poller serves every page.
type live struct {
	c    *Console
	frag *template.Template

	mu   sync.Mutex
	last []byte // the fragment last pushed
	sum  [sha256.Size]byte
	subs map[chan []byte]struct{}
}

func newLive(c *Console) *live {
	return &live{c: c, frag: c.pages["overview"], subs: map[chan []byte]struct{}{}}
}

func (l *live) run(ctx context.Context) {
	t := time.NewTicker(l.c.cfg.Poll)
	defer t.Stop()
	for {
		// Only open pages need the hub asked. A hub that does not answer
		// leaves the pages as they were; the next tick tries again.
		l.mu.Lock()
		watched := len(l.subs) > 0
		l.mu.Unlock()
		if watched {
			_ = l.refresh(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh renders the fragment from the hub's node list and, if it
// changed, sends it to every subscriber.
func (l *live) refresh(ctx context.Context) error {
	res, err := l.c.cfg.Hub.ListNodes(ctx)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := l.frag.ExecuteTemplate(&b, "live", summarize(res.Nodes, l.c.cfg.Now())); err != nil {
		return err
	}
	sum := sha256.Sum256(b.Bytes())
	l.mu.Lock()
	defer l.mu.Unlock()
	if sum == l.sum && l.last != nil {
		return nil
	}
	l.sum, l.last = sum, b.Bytes()
	for ch := range l.subs {
		send(ch, l.last)
	}
	return nil
}

// send replaces what ch holds with frag: a slow page gets the newest only.
func send(ch chan []byte, frag []byte) {
	select {
	case <-ch:
	default:
	}
	ch <- frag
}

func (l *live) serve(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan []byte, 1)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	if l.last != nil {
		send(ch, l.last)
	}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	// Nobody may have watched for a while: what the page got may be old.
	_ = l.refresh(r.Context())
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			// A comment keeps proxies and the browser from timing out.
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case frag := <-ch:
			if err := writeEvent(w, "overview", frag); err != nil {
				return
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
	"inc":  func(i int) int { return i + 1 },
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
