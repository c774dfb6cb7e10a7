package console

import (
	"bufio"
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api/apitest"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// enrollWorker enrolls another worker on build b1, with a node API of its
// own the consoles reach.
func (h *testHub) enrollWorker(t *testing.T, name string) *fakeNode {
	t.Helper()
	now := time.Now()
	if err := h.store.RegisterEK("test", name, ekOf(name), now); err != nil {
		t.Fatal(err)
	}
	secret, nonce := []byte("secret-"+name), []byte("nonce-"+name)
	sh := sha256.Sum256(secret)
	id := "s-" + name
	if err := h.store.BeginSession(hub.Session{ID: id, Kind: hub.KindEnroll, Name: name, Role: "worker", EKHash: ekOf(name), SecretHash: sh[:],
		Created: now, Expires: now.Add(10 * time.Minute)}, hub.EKFacts{}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Activate(id, secret, nonce, now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.TakeNonce(id, nonce, now); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.CompleteEnrollment(id, hub.Enrollment{BuildID: "b1", Cert: hub.Cert{Serial: "r" + name, NotAfter: now.Add(time.Hour)}}, now); err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{name: name, build: "b1"}
	h.nodeAPIs[name] = apitest.Serve(t, apitest.NodeServerOf(t, h.ca, name, "worker", f))
	return f
}

// rollConsole is a console of role whose spec lists the nodes in order.
func (h *testHub) rollConsole(t *testing.T, role pki.Role, order ...string) *browser {
	t.Helper()
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	s.Topology.Nodes = nil
	for _, n := range order {
		s.Topology.Nodes = append(s.Topology.Nodes, spec.Node{Name: n, Role: spec.Role("worker")})
	}
	return h.consoleWith(t, role, func(c *Config) { c.Spec = s })
}

// assigned lists the hub's audit entries of build assignments.
func (h *testHub) assigned(t *testing.T) []string {
	t.Helper()
	es, err := h.store.Audit(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Action == string(pki.ActionUpgrade) {
			out = append(out, e.Target+" by "+e.Actor+": "+e.Outcome)
		}
	}
	return out
}

func rollForm(csrf, build, confirm string) url.Values {
	return url.Values{"csrf": {csrf}, "build": {build}, "confirm": {confirm}}
}

// A reader or an operator is offered no roll and a forged one is refused
// before anything reaches the hub; an admin's roll needs the session's
// CSRF token, a build the console was given and that build's id typed.
func TestRollRefused(t *testing.T) {
	h := startHub(t)
	for _, role := range []pki.Role{pki.RoleReader, pki.RoleOperator} {
		b := h.rollConsole(t, role, "w-3")
		if _, page := b.get(t, "/upgrades"); strings.Contains(page, `action="/roll"`) || strings.Contains(page, `id="roll-note"`) {
			t.Errorf("%s's upgrades page offers a roll or speaks of one", role)
		}
		if code, body := b.post(t, "/roll", rollForm(b.c.csrf(b.session(t)), "2026-b2", "2026-b2")); code != http.StatusForbidden || !strings.Contains(body, "may not") {
			t.Errorf("%s's forged roll = %d %s, want 403", role, code, body)
		}
	}
	admin := h.rollConsole(t, pki.RoleAdmin, "w-3")
	_, page := admin.get(t, "/upgrades")
	// A form for each build, naming it.
	for _, id := range []string{"2026-b1", "2026-b2"} {
		form := between(t, page, `<input type="hidden" name="build" value="`+id+`">`, "</form>")
		if !strings.Contains(form, "<code>"+id+"</code> to confirm") || !strings.Contains(form, "Roll build "+id) {
			t.Errorf("the admin's roll form of build %s does not name it:\n%s", id, form)
		}
	}
	if !strings.Contains(page, "w-3") {
		t.Error("the roll form does not say which nodes it goes through")
	}
	tok := csrfOf(t, page)
	other := h.rollConsole(t, pki.RoleAdmin, "w-3")
	for _, tt := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{"build": {"2026-b2"}, "confirm": {"2026-b2"}}, http.StatusForbidden},
		{"another console's token", rollForm(other.c.csrf(other.session(t)), "2026-b2", "2026-b2"), http.StatusForbidden},
		{"no confirmation", rollForm(tok, "2026-b2", ""), http.StatusBadRequest},
		{"another build's id typed", rollForm(tok, "2026-b2", "2026-b1"), http.StatusBadRequest},
		{"a node's name typed", rollForm(tok, "2026-b2", "w-3"), http.StatusBadRequest},
		// Only a build the console was given, never a path from the form.
		{"a path", rollForm(tok, h.builds[1], h.builds[1]), http.StatusBadRequest},
		{"an unknown build", rollForm(tok, "2026-b9", "2026-b9"), http.StatusBadRequest},
	} {
		if code, _ := admin.post(t, "/roll", tt.form); code != tt.want {
			t.Errorf("%s: roll = %d, want %d", tt.name, code, tt.want)
		}
	}
	// A GET does nothing either.
	if code, _ := admin.get(t, "/roll?"+rollForm(tok, "2026-b2", "2026-b2").Encode()); code == http.StatusSeeOther {
		t.Error("a GET started a roll")
	}
	if got := h.assigned(t); len(got) != 0 || len(h.node.upgrades) != 0 {
		t.Fatalf("refused rolls reached the hub or the node: %v, %v", got, h.node.upgrades)
	}
}

// A console that cannot roll says why to an admin, offers no form, and
// refuses a forged roll with the same reason.
func TestRollUnavailable(t *testing.T) {
	h := startHub(t)
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no spec", func(c *Config) { c.Spec = nil }, "kubedos console SPEC"},
		{"no build", func(c *Config) { c.Builds = nil }, "--build"},
		{"no node API", func(c *Config) { c.DialNode = nil }, "node API"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := h.consoleWith(t, pki.RoleAdmin, tt.edit)
			_, page := b.get(t, "/upgrades")
			if strings.Contains(page, `action="/roll"`) {
				t.Error("a roll form where none can run")
			}
			note := between(t, page, `id="roll-note"`, "</p>")
			if !strings.Contains(note, tt.want) {
				t.Errorf("the note does not say %q:\n%s", tt.want, note)
			}
			// The session's token, from a page with a form (the revoke's).
			_, nodePage := b.get(t, "/nodes/w-2")
			code, body := b.post(t, "/roll", rollForm(csrfOf(t, nodePage), "2026-b2", "2026-b2"))
			if code != http.StatusNotImplemented || !strings.Contains(body, tt.want) {
				t.Errorf("forged roll = %d %s, want 501 saying %q", code, body, tt.want)
			}
		})
	}
	if got := h.assigned(t); len(got) != 0 {
		t.Fatalf("a roll reached the hub: %v", got)
	}
}

// The roll goes through the spec's nodes in order, each upgraded by
// cluster.UpgradeNode as the admin (the hub audits each assignment under
// the admin, the nodes see the admin's certificate), and stops at the
// first failure: the nodes after it are not touched. The open upgrades
// page hears of each step without reloading.
func TestRoll(t *testing.T) {
	h := startHub(t)
	w4 := h.enrollWorker(t, "w-4")
	// w-2 is quarantined: the hub refuses it a build, and the roll stops
	// there before w-1.
	admin := h.rollConsole(t, pki.RoleAdmin, "w-3", "w-4", "w-2", "w-1")
	events := watch(t, admin, "upgrades")
	if e := events.next(t); strings.Contains(e, `id="roll"`) {
		t.Fatalf("a roll before any:\n%s", e)
	}
	_, page := admin.get(t, "/upgrades")
	if code, body := admin.post(t, "/roll", rollForm(csrfOf(t, page), "2026-b2", "2026-b2")); code != http.StatusSeeOther {
		t.Fatalf("admin roll = %d: %s", code, body)
	}
	// Pushed by the roll itself: the tests' consoles never poll.
	last := events.until(t, func(e string) bool { return strings.Contains(e, `class="roll failed"`) })
	roll := between(t, last, `id="roll"`, "</section>")
	for _, want := range []string{"build 2026-b2", "by admin", `<li class="step-upgraded">w-3`, `<li class="step-upgraded">w-4`,
		`<li class="step-failed">w-2`, `<li class="step-not-reached">w-1`, "stopped at w-2", "only an enrolled node can be upgraded"} {
		if !strings.Contains(roll, want) {
			t.Errorf("the roll's live section lacks %q:\n%s", want, roll)
		}
	}
	if got, want := h.assigned(t), []string{"w-3 by admin (admin): ok", "w-4 by admin (admin): ok"}; len(got) != 3 || !slices.Equal(got[:2], want) ||
		!strings.HasPrefix(got[2], "w-2 by admin (admin): ") || strings.HasSuffix(got[2], ": ok") {
		t.Errorf("the hub audited assignments %v; want w-3 and w-4 by admin, w-2 refused, nothing of w-1", got)
	}
	for _, f := range []*fakeNode{h.node, w4} {
		f.mu.Lock()
		got := f.upgrades
		f.mu.Unlock()
		if !slices.Equal(got, []string{"b2-worker by admin"}) {
			t.Errorf("%s saw upgrades %v", f.nodeName(), got)
		}
	}
	// Each node's own upgrade, with its progress, is on the page too.
	_, page = admin.get(t, "/upgrades")
	if n := strings.Count(page, `<section class="job ended">`); n != 2 || !strings.Contains(page, "the hub accepts build 2026-b2") {
		t.Errorf("%d upgrades shown ended (want 2), with their progress:\n%s", n, page)
	}
}

// While a roll runs, another roll and a node's own upgrade are refused,
// and the page shows which node is being upgraded and which wait.
func TestRollOneAtATime(t *testing.T) {
	h := startHub(t)
	h.node.gate = make(chan struct{})
	h.enrollWorker(t, "w-4")
	admin := h.rollConsole(t, pki.RoleAdmin, "w-3", "w-4")
	events := watch(t, admin, "upgrades")
	events.next(t)
	_, page := admin.get(t, "/upgrades")
	tok := csrfOf(t, page)
	if code, body := admin.post(t, "/roll", rollForm(tok, "2026-b2", "2026-b2")); code != http.StatusSeeOther {
		t.Fatalf("admin roll = %d: %s", code, body)
	}
	e := events.until(t, func(e string) bool { return strings.Contains(e, `<li class="step-running">w-3`) })
	if !strings.Contains(e, `<li class="step-waiting">w-4`) || !strings.Contains(e, `class="roll running"`) {
		t.Errorf("the running roll's section:\n%s", e)
	}
	if code, body := admin.post(t, "/roll", rollForm(tok, "2026-b1", "2026-b1")); code != http.StatusConflict || !strings.Contains(body, "running") {
		t.Errorf("a second roll = %d %s, want 409", code, body)
	}
	if code, body := admin.post(t, "/nodes/w-4/upgrade", url.Values{"csrf": {tok}, "confirm": {"w-4"}, "build": {"2026-b2"}}); code != http.StatusConflict || !strings.Contains(body, "roll") {
		t.Errorf("a node's upgrade during the roll = %d %s, want 409", code, body)
	}
	close(h.node.gate)
	events.until(t, func(e string) bool { return strings.Contains(e, `class="roll ended"`) })
	// Ended, the next roll may start: both nodes run the build already,
	// so it writes nothing (as kubedos cluster upgrade run again).
	if code, body := admin.post(t, "/roll", rollForm(tok, "2026-b2", "2026-b2")); code != http.StatusSeeOther {
		t.Fatalf("the roll again = %d: %s", code, body)
	}
	e = events.until(t, func(e string) bool {
		return strings.Contains(e, `class="roll ended"`) && strings.Contains(e, "step-current")
	})
	if strings.Count(e, `<li class="step-current">`) != 2 {
		t.Errorf("the second roll did not find both nodes current:\n%s", e)
	}
	h.node.mu.Lock()
	defer h.node.mu.Unlock()
	if len(h.node.upgrades) != 1 {
		t.Errorf("w-3 was written %d times", len(h.node.upgrades))
	}
}

// eventStream is an open page's server-sent events.
type eventStream chan string

// watch opens /events?on=on as b's page does.
func watch(t *testing.T, b *browser, on string) eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events?on="+on, nil)
	res, err := b.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	events := make(eventStream, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(strings.TrimPrefix(sc.Text(), "data: ") + "\n")
		}
	}()
	return events
}

func (es eventStream) next(t *testing.T) string {
	t.Helper()
	select {
	case e, ok := <-es:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return ""
	}
}

// until reads events until one satisfies ok.
func (es eventStream) until(t *testing.T, ok func(string) bool) string {
	t.Helper()
	for {
		if e := es.next(t); ok(e) {
			return e
		}
	}
}

// The console the hub serves on the master has no build's images and no
// operator's key for the nodes: it says so to an admin, and where to roll
// from, rather than offer a roll it cannot run.
func TestRollAtHub(t *testing.T) {
	mh := startMasterHub(t)
	admin := mh.browser(t, mh.cert(t, "alice", pki.RoleAdmin))
	_, page := admin.get(t, "/upgrades")
	if strings.Contains(page, `action="/roll"`) {
		t.Error("the console at the hub offers a roll")
	}
	note := between(t, page, `id="roll-note"`, "</p>")
	for _, want := range []string{"runs at the hub", "kubedos console SPEC --build DIR", "kubedos cluster upgrade SPEC --build DIR"} {
		if !strings.Contains(note, want) {
			t.Errorf("the note at the hub does not say %q:\n%s", want, note)
		}
	}
	// The session's token, from a page with a form (the revoke's).
	tok := ""
	_, nodePage := admin.get(t, "/nodes/w-1")
	if m := csrfField.FindStringSubmatch(nodePage); m != nil {
		tok = m[1]
	}
	if code, body := admin.do(t, http.MethodPost, "/roll", rollForm(tok, "b-1", "b-1")); code != http.StatusNotImplemented || !strings.Contains(body, "runs at the hub") {
		t.Errorf("admin's forged roll at the hub = %d %s, want 501 with the reason", code, body)
	}
	reader := mh.browser(t, mh.cert(t, "rita", pki.RoleReader))
	if _, page := reader.get(t, "/upgrades"); strings.Contains(page, `id="roll-note"`) {
		t.Error("a reader is told about rolling the cluster")
	}
	if code, _ := reader.do(t, http.MethodPost, "/roll", rollForm(tok, "b-1", "b-1")); code != http.StatusForbidden {
		t.Errorf("reader's forged roll at the hub = %d, want 403", code)
	}
	for _, n := range []string{"w-1", "w-2"} {
		if auditAtHub(t, mh.h, "alice (admin)", string(pki.ActionUpgrade), n) {
			t.Errorf("an upgrade of %s reached the hub", n)
		}
	}
}
