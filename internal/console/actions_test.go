package console

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/pki"
)

// csrfOf is the CSRF token of a page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// auditHas says whether the hub's log has an entry by actor of action on target.
func auditHas(t *testing.T, h *testHub, actor, action, target string) bool {
	t.Helper()
	es, err := h.store.Audit(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(es, func(e hub.AuditEntry) bool { return e.Actor == actor && e.Action == action && e.Target == target })
}

func TestReplace(t *testing.T) {
	h := startHub(t)
	reader := h.console(t, pki.RoleReader)
	// The reader's own session and CSRF token, the right name: refused for the role.
	if code, _ := reader.post(t, "/nodes/w-2/replace", url.Values{"csrf": {reader.c.csrf(reader.session(t))}, "confirm": {"w-2"}}); code != http.StatusForbidden {
		t.Errorf("reader replace = %d, want 403", code)
	}
	admin := h.console(t, pki.RoleAdmin)
	_, page := admin.get(t, "/nodes/w-2")
	if !strings.Contains(page, `action="/nodes/w-2/replace"`) {
		t.Fatal("an admin's page of a quarantined node offers no replace")
	}
	tok := csrfOf(t, page)
	for _, tt := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{"confirm": {"w-2"}}, http.StatusForbidden},
		{"the reader's console's token", url.Values{"csrf": {reader.c.csrf(admin.session(t))}, "confirm": {"w-2"}}, http.StatusForbidden},
		{"no confirmation", url.Values{"csrf": {tok}}, http.StatusBadRequest},
		{"another node's name", url.Values{"csrf": {tok}, "confirm": {"w-3"}}, http.StatusBadRequest},
	} {
		if code, _ := admin.post(t, "/nodes/w-2/replace", tt.form); code != tt.want {
			t.Errorf("%s: replace = %d, want %d", tt.name, code, tt.want)
		}
	}
	if n, _ := h.store.Node("w-2"); n.State != hub.StateQuarantined {
		t.Fatalf("w-2 is %s after refused requests", n.State)
	}
	if code, body := admin.post(t, "/nodes/w-2/replace", url.Values{"csrf": {tok}, "confirm": {"w-2"}}); code != http.StatusSeeOther {
		t.Fatalf("admin replace = %d: %s", code, body)
	}
	if n, _ := h.store.Node("w-2"); n.State != hub.StateReplaced {
		t.Errorf("w-2 is %s, want replaced", n.State)
	}
	if !auditHas(t, h, "admin (admin)", string(pki.ActionReplace), "w-2") {
		t.Error("the hub's audit log has no replace of w-2 by admin")
	}
}

func TestUpgrade(t *testing.T) {
	h := startHub(t)
	// The role table gives upgrades to admins only: an operator's console
	// shows no upgrade form and its forged request is refused.
	op := h.console(t, pki.RoleOperator)
	if _, page := op.get(t, "/nodes/w-3"); strings.Contains(page, `action="/nodes/w-3/upgrade"`) {
		t.Error("an operator's page offers an upgrade")
	}
	if code, _ := op.post(t, "/nodes/w-3/upgrade", url.Values{"csrf": {op.c.csrf(op.session(t))}, "confirm": {"w-3"}, "build": {"2026-b2"}}); code != http.StatusForbidden {
		t.Errorf("operator upgrade = %d, want 403", code)
	}
	admin := h.console(t, pki.RoleAdmin)
	tok := csrfOf(t, func() string { _, p := admin.get(t, "/nodes/w-3"); return p }())
	for _, tt := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{"confirm": {"w-3"}, "build": {"2026-b2"}}, http.StatusForbidden},
		{"another node's name", url.Values{"csrf": {tok}, "confirm": {"w-2"}, "build": {"2026-b2"}}, http.StatusBadRequest},
		// Only a build the console was given, never a path from the form.
		{"a path", url.Values{"csrf": {tok}, "confirm": {"w-3"}, "build": {h.builds[1]}}, http.StatusBadRequest},
		{"an unknown build", url.Values{"csrf": {tok}, "confirm": {"w-3"}, "build": {"2026-b9"}}, http.StatusBadRequest},
	} {
		if code, _ := admin.post(t, "/nodes/w-3/upgrade", tt.form); code != tt.want {
			t.Errorf("%s: upgrade = %d, want %d", tt.name, code, tt.want)
		}
	}
	if n, _ := h.store.Node("w-3"); n.Target != "" || len(h.node.upgrades) != 0 {
		t.Fatalf("w-3 was touched by refused requests: target %q, upgrades %v", n.Target, h.node.upgrades)
	}
	code, _ := admin.post(t, "/nodes/w-3/upgrade", url.Values{"csrf": {tok}, "confirm": {"w-3"}, "build": {"2026-b2"}})
	if code != http.StatusSeeOther {
		t.Fatalf("admin upgrade = %d, want 303", code)
	}
	// The upgrade runs in the background; the page shows it as it goes.
	var page string
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, page = admin.get(t, "/upgrades")
		if strings.Contains(page, `class="job ended"`) || strings.Contains(page, `class="job failed"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(page, `class="job ended"`) || !regexp.MustCompile(`by admin; upgraded`).MatchString(page) {
		t.Fatalf("the upgrade did not end upgraded:\n%s", page)
	}
	for _, want := range []string{"the hub accepts build 2026-b2 (role worker image b2-worker)", "wrote slot b"} {
		if !strings.Contains(page, want) {
			t.Errorf("the upgrade's progress lacks %q", want)
		}
	}
	// The hub accepted the build from the admin (its signature checked)
	// and audited it; the node got the worker image's three files from
	// the admin's certificate.
	if n, _ := h.store.Node("w-3"); n.Target != "b2-worker" {
		t.Errorf("w-3's target at the hub = %q, want b2-worker", n.Target)
	}
	if !auditHas(t, h, "admin (admin)", string(pki.ActionUpgrade), "w-3") {
		t.Error("the hub's audit log has no upgrade of w-3 by admin")
	}
	h.node.mu.Lock()
	got, n := h.node.upgrades, h.node.received
	h.node.mu.Unlock()
	if want := int64(3 * len("b2-worker/root.squashfs payload")); !slices.Equal(got, []string{"b2-worker by admin"}) || n < want-10 {
		t.Errorf("node saw upgrades %v of %d bytes", got, n)
	}
	// Until the node attests on it, the hub lists the upgrade as assigned.
	if !strings.Contains(between(t, page, `id="pending"`, "</table>"), "<td>b1</td><td>b2-worker</td>") {
		t.Errorf("the upgrades page does not list w-3 assigned b2-worker:\n%s", page)
	}
}

func TestRestartService(t *testing.T) {
	h := startHub(t)
	reader := h.console(t, pki.RoleReader)
	if code, _ := reader.post(t, "/nodes/w-3/restart", url.Values{"csrf": {reader.c.csrf(reader.session(t))}, "confirm": {"w-3"}, "service": {"kubelet.service"}}); code != http.StatusForbidden {
		t.Errorf("reader restart = %d, want 403", code)
	}
	op := h.console(t, pki.RoleOperator)
	_, page := op.get(t, "/nodes/w-3")
	form := between(t, page, `action="/nodes/w-3/restart"`, "</form>")
	// Only what the node reports restartable is offered.
	if !strings.Contains(form, `<option value="kubelet.service">`) || strings.Contains(form, "journald") {
		t.Errorf("restart form offers the wrong services:\n%s", form)
	}
	tok := csrfOf(t, page)
	for _, tt := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{"confirm": {"w-3"}, "service": {"kubelet.service"}}, http.StatusForbidden},
		{"another node's name", url.Values{"csrf": {tok}, "confirm": {"w-1"}, "service": {"kubelet.service"}}, http.StatusBadRequest},
		{"a service not restartable", url.Values{"csrf": {tok}, "confirm": {"w-3"}, "service": {"systemd-journald.service"}}, http.StatusBadRequest},
		{"kubedosd itself", url.Values{"csrf": {tok}, "confirm": {"w-3"}, "service": {"kubedosd.service"}}, http.StatusBadRequest},
	} {
		if code, _ := op.post(t, "/nodes/w-3/restart", tt.form); code != tt.want {
			t.Errorf("%s: restart = %d, want %d", tt.name, code, tt.want)
		}
	}
	if len(h.node.restarts) != 0 {
		t.Fatalf("refused requests reached the node: %v", h.node.restarts)
	}
	code, _ := op.post(t, "/nodes/w-3/restart", url.Values{"csrf": {tok}, "confirm": {"w-3"}, "service": {"kubelet.service"}})
	if code != http.StatusSeeOther {
		t.Fatalf("operator restart = %d, want 303", code)
	}
	// The node saw the call from the operator's certificate: it records it
	// under that name.
	h.node.mu.Lock()
	got := h.node.restarts
	h.node.mu.Unlock()
	if !slices.Equal(got, []string{"kubelet.service by operator"}) {
		t.Errorf("node restarts = %v", got)
	}
	if _, page := op.get(t, "/nodes/w-3?done=restart&unit=kubelet.service%3Cx%3E"); !strings.Contains(page, "restart kubelet.service&lt;x&gt;: done") {
		t.Error("the node page does not confirm the restart (escaped)")
	}
}

// A node whose API does not answer: the page says so and offers no restart.
func TestNodeAPIDown(t *testing.T) {
	b := startHub(t).consoleWith(t, pki.RoleOperator, func(c *Config) {
		c.DialNode = func(string) (*api.NodeClient, func(), error) { return nil, nil, context.DeadlineExceeded }
	})
	_, page := b.get(t, "/nodes/w-3")
	if !strings.Contains(page, "node API: context deadline exceeded") || strings.Contains(page, "/restart") {
		t.Errorf("node page with the node API down:\n%s", page)
	}
}

func TestLiveUpgrades(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleReader)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events?on=upgrades", nil)
	res, err := b.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(res.Body)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
		close(events)
	}()
	next := func() string {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
			return ""
		}
	}
	if e := next(); !strings.HasPrefix(e, "event: upgrades\n") || !strings.Contains(e, "No node has an upgrade target") {
		t.Fatalf("first event:\n%s", e)
	}
	// Someone assigns w-3 a build at the hub: the open page hears of it.
	bd := LoadBuild(h.builds[1], nil)
	if bd.Err != "" {
		t.Fatal(bd.Err)
	}
	admin := h.console(t, pki.RoleAdmin)
	if _, err := admin.c.cfg.Hub.AssignBuild(ctx, "w-3", bd.raw, bd.sig); err != nil {
		t.Fatal(err)
	}
	if err := b.c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if e := next(); !strings.Contains(e, `<a href="/nodes/w-3">w-3</a>`) || !strings.Contains(e, "b2-worker") {
		t.Errorf("event after the assignment:\n%s", e)
	}
	if code, _ := b.get(t, "/events?on=nothing"); code != http.StatusNotFound {
		t.Errorf("events of an unknown fragment = %d, want 404", code)
	}
}
