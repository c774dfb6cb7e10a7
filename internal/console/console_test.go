package console

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/api/apitest"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/spec"
)

// anyBuild is the hub policy of these tests: nothing is verified through
// it, nodes are put in their states through the store.
type anyBuild struct{}

func (anyBuild) Expected(string, string) (string, measure.Prediction, error) {
	return "b1", measure.Prediction{}, nil
}

// testHub is a real hub (store, rules, gRPC over mTLS) on loopback, with
// w-3's node API (a fake over real mTLS) and two signed builds: b1, which
// w-3 runs, and b2.
type testHub struct {
	addr  string
	ca    *pki.CA
	store *hub.Store
	// artifact signs the builds; the hub checks upgrades with its public half.
	artifact ed25519.PrivateKey
	builds   []string
	preds    map[string]map[int]string // image -> predicted PCR values
	node     *fakeNode
	nodeAddr string
	// nodeAPIs are the node APIs the consoles reach, by node: w-3's and
	// those a test adds.
	nodeAPIs map[string]string
}

// evil is what a node could put in the measurements its quarantine
// reason quotes.
const evil = `PCR 4: expected 0xab, got <script>alert("pwned")</script>`

func ekOf(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("%x", h)
}

// startHub serves a hub with w-1 pending, w-2 quarantined and w-3 enrolled.
func startHub(t *testing.T) *testHub {
	t.Helper()
	ca := pkitest.NewCA(t)
	st, err := hub.Open(t.TempDir() + "/hub.db")
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Options{Store: st, CA: ca, Verifier: hub.AttestVerifier{}, Policy: anyBuild{}, ArtifactKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hub.NewServer(h, ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	now := time.Now()
	for _, n := range []string{"w-1", "w-2", "w-3"} {
		if err := st.RegisterEK("test", n, ekOf(n), now); err != nil {
			t.Fatal(err)
		}
	}
	session := func(name string) string {
		secret, nonce := []byte("secret-"+name), []byte("nonce-"+name)
		sh := sha256.Sum256(secret)
		id := "s-" + name
		s := hub.Session{ID: id, Kind: hub.KindEnroll, Name: name, Role: "worker", EKHash: ekOf(name), SecretHash: sh[:],
			Created: now, Expires: now.Add(10 * time.Minute)}
		if err := st.BeginSession(s, hub.EKFacts{}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Activate(id, secret, nonce, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
		if _, err := st.TakeNonce(id, nonce, now); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Quarantine returns the refusal it recorded.
	var refusal *hub.Refusal
	if err := st.Quarantine(session("w-2"), hub.Reason{Check: "pcr-policy", Detail: evil, At: now}, "b1", now); !errors.As(err, &refusal) || !refusal.Quarantined {
		t.Fatalf("quarantine w-2: %v", err)
	}
	if _, err := st.CompleteEnrollment(session("w-3"), hub.Enrollment{BuildID: "b1", Cert: hub.Cert{Serial: "a", NotAfter: now.Add(time.Hour)}}, now); err != nil {
		t.Fatal(err)
	}
	th := &testHub{addr: lis.Addr().String(), ca: ca, store: st, artifact: priv, preds: map[string]map[int]string{}}
	for _, b := range []struct{ id, worker string }{{"2026-b1", "b1"}, {"2026-b2", "b2-worker"}} {
		dir, preds := testBuild(t, priv, b.id, map[string]string{"worker": b.worker, "master": b.worker + "-master"})
		th.builds = append(th.builds, dir)
		maps.Copy(th.preds, preds)
	}
	th.node = &fakeNode{build: "b1", units: []api.Unit{
		{Name: "kubelet.service", Load: "loaded", Active: "active", Sub: "running", Description: "kubelet <b>", Restartable: true},
		{Name: "containerd.service", Load: "loaded", Active: "active", Sub: "running", Restartable: true},
		{Name: "systemd-journald.service", Load: "loaded", Active: "active", Sub: "running"},
	}}
	th.nodeAddr = apitest.Serve(t, apitest.NodeServerOf(t, ca, "w-3", "worker", th.node))
	th.nodeAPIs = map[string]string{"w-3": th.nodeAddr}
	return th
}

// browser is a logged-in client of a console acting with role's
// certificate, as kubedos console dials the hub.
type browser struct {
	c   *Console
	srv *httptest.Server
	cl  *http.Client
}

func (h *testHub) console(t *testing.T, role pki.Role) *browser {
	t.Helper()
	return h.consoleWith(t, role, nil)
}

// consoleWith is console with the Config changed by edit first.
func (h *testHub) consoleWith(t *testing.T, role pki.Role, edit func(*Config)) *browser {
	t.Helper()
	access := cluster.Access{Keys: pkitest.WriteKeys(t, h.ca, role)}
	conf, err := access.TLS(api.HubServerName)
	if err != nil {
		t.Fatal(err)
	}
	cl, done, err := access.Hub(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	cc, err := access.Conn(h.addr, api.HubServerName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Hub: cl, Cert: conf.Certificates[0].Leaf, Cluster: "test", HubAddr: h.addr, Poll: time.Hour,
		// What kubedos console wires: the CLI's own library calls.
		Act: func(ctx context.Context, act cluster.NodeAction) (cluster.NodeActed, error) {
			return access.ActOnNode(ctx, h.addr, act)
		},
		DialNode: func(name string) (*api.NodeClient, func(), error) {
			addr, ok := h.nodeAPIs[name]
			if !ok {
				return nil, nil, fmt.Errorf("node %s: no API in this test", name)
			}
			return cluster.NodeDialer{Addr: addr, Name: name, Access: access}.Dial()
		},
		Runs: api.NewRunsClient(cc), Spec: s, Builds: h.builds, ArtifactKey: h.artifact.Public().(ed25519.PublicKey),
		Upgrade: cluster.UpgradeOptions{SettleEvery: 20 * time.Millisecond, Wait: 20 * time.Second}}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{c: c, srv: httptest.NewTLSServer(c)}
	t.Cleanup(b.srv.Close)
	jar, _ := cookiejar.New(nil)
	cl2 := *b.srv.Client() // the server's own client stays without cookies
	b.cl = &cl2
	b.cl.Jar = jar
	b.cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if code, _ := b.get(t, "/login?token="+c.Token()); code != http.StatusSeeOther {
		t.Fatalf("login = %d, want 303", code)
	}
	return b
}

func (b *browser) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := b.cl.Get(b.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func (b *browser) post(t *testing.T, path string, form url.Values) (int, string) {
	t.Helper()
	res, err := b.cl.PostForm(b.srv.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// session is the browser's session id, as its cookie holds it.
func (b *browser) session(t *testing.T) *session {
	t.Helper()
	u, _ := url.Parse(b.srv.URL)
	for _, ck := range b.cl.Jar.Cookies(u) {
		if ck.Name == cookieName {
			b.c.mu.Lock()
			defer b.c.mu.Unlock()
			if s := b.c.sessions[ck.Value]; s != nil {
				return s
			}
		}
	}
	t.Fatal("no session cookie")
	return nil
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func TestOverviewShowsNodes(t *testing.T) {
	b := startHub(t).console(t, pki.RoleReader)
	code, body := b.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d: %s", code, body)
	}
	for _, want := range []string{`href="/nodes/w-1"`, `href="/nodes/w-2"`, `href="/nodes/w-3"`, "cluster <b>test</b>",
		// worker: 2 nodes, enrolled 1, pending 0, quarantined 1, revoked 0, fenced 0, replaced 0
		"<tr><th>worker</th><td>2</td><td>1</td><td>0</td><td>1</td><td>0</td><td>0</td><td>0</td></tr>",
		// A registered EK has no role until the node enrolls.
		"<tr><th>(no role yet)</th><td>1</td><td>0</td><td>1</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
}

func TestLoginRequired(t *testing.T) {
	b := startHub(t).console(t, pki.RoleAdmin)
	anon := b.srv.Client()
	for _, path := range []string{"/", "/nodes/w-3", "/audit", "/events", "/builds", "/upgrades", "/plan", "/events?on=upgrades", "/login?token=wrong"} {
		res, err := anon.Get(b.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session = %d, want 401", path, res.StatusCode)
		}
	}
	for _, action := range []string{"revoke", "fence", "replace", "upgrade", "restart"} {
		res, err := anon.PostForm(b.srv.URL+"/nodes/w-3/"+action, url.Values{"confirm": {"w-3"}, "build": {"2026-b2"}, "service": {"kubelet.service"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session = %d, want 401", action, res.StatusCode)
		}
	}
}

func TestQuarantineReasonEscaped(t *testing.T) {
	b := startHub(t).console(t, pki.RoleReader)
	code, body := b.get(t, "/nodes/w-2")
	if code != http.StatusOK {
		t.Fatalf("GET /nodes/w-2 = %d: %s", code, body)
	}
	if strings.Contains(body, "<script>alert") {
		t.Error("the quarantine reason reached the page unescaped")
	}
	if want := `pcr-policy: PCR 4: expected 0xab, got &lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;`; !strings.Contains(body, want) {
		t.Errorf("node page lacks the full escaped reason %q:\n%s", want, body)
	}
	if !strings.Contains(body, ekOf("w-2")) {
		t.Error("node page lacks the EK hash")
	}
}

func TestReasonBounded(t *testing.T) {
	v := (&Console{}).nodeView(&Operator{Role: pki.RoleReader}, &api.Node{Name: "w", Reason: &api.Refusal{Check: "c", Detail: strings.Repeat("x", 1<<20)}}, "")
	if len(v.Reason) > maxReason+64 || !strings.Contains(v.Reason, "bytes in all") {
		t.Errorf("reason of %d bytes not bounded to %d with a note", len(v.Reason), maxReason)
	}
}

func TestReaderSeesNoActionsAndIsRefused(t *testing.T) {
	h := startHub(t)
	reader := h.console(t, pki.RoleReader)
	_, body := reader.get(t, "/nodes/w-3")
	if strings.Contains(body, "/revoke") || strings.Contains(body, "/fence") || strings.Contains(body, ">Revoke<") {
		t.Error("a reader's node page offers revoke or fence")
	}
	// A forged POST with everything right but the role: a valid session,
	// the session's own CSRF token and the confirmation.
	for _, action := range []string{"revoke", "fence"} {
		code, msg := reader.post(t, "/nodes/w-3/"+action, url.Values{"csrf": {reader.c.csrf(reader.session(t))}, "confirm": {"w-3"}})
		if code != http.StatusForbidden {
			t.Errorf("reader POST %s = %d (%s), want 403", action, code, msg)
		}
	}
	n, err := h.store.Node("w-3")
	if err != nil || n.State != hub.StateEnrolled {
		t.Errorf("w-3 after a reader's forged revoke: %v %v, want enrolled", n.State, err)
	}
	admin := h.console(t, pki.RoleAdmin)
	if _, body := admin.get(t, "/nodes/w-3"); !strings.Contains(body, `action="/nodes/w-3/revoke"`) || !strings.Contains(body, `action="/nodes/w-3/fence"`) {
		t.Error("an admin's node page lacks the revoke and fence forms")
	}
}

func TestAdminRevokeAudited(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleAdmin)
	_, page := b.get(t, "/nodes/w-3")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the admin's node page")
	}
	tests := []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{"confirm": {"w-3"}}, http.StatusForbidden},
		{"another session's token", url.Values{"csrf": {b.c.csrf(&session{id: "other", op: b.c.self})}, "confirm": {"w-3"}}, http.StatusForbidden},
		{"no confirmation", url.Values{"csrf": {m[1]}}, http.StatusBadRequest},
		{"wrong node confirmed", url.Values{"csrf": {m[1]}, "confirm": {"w-1"}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		if code, _ := b.post(t, "/nodes/w-3/revoke", tt.form); code != tt.want {
			t.Errorf("%s: POST = %d, want %d", tt.name, code, tt.want)
		}
	}
	if n, _ := h.store.Node("w-3"); n.State != hub.StateEnrolled {
		t.Fatalf("w-3 is %s after refused requests", n.State)
	}
	code, _ := b.post(t, "/nodes/w-3/revoke", url.Values{"csrf": {m[1]}, "confirm": {"w-3"}, "reason": {"stolen <disk>"}})
	if code != http.StatusSeeOther {
		t.Fatalf("admin revoke = %d, want 303", code)
	}
	n, err := h.store.Node("w-3")
	if err != nil || n.State != hub.StateRevoked || n.Reason == nil || n.Reason.By != "admin (admin)" {
		t.Fatalf("w-3 at the hub = %+v %v, want revoked by admin", n, err)
	}
	_, audit := b.get(t, "/audit")
	if !regexp.MustCompile(`<td>admin \(admin\)</td><td>node.revoke</td><td>w-3</td><td>[^<]*</td><td class="detail">stolen &lt;disk&gt;`).MatchString(audit) {
		t.Errorf("audit page lacks admin's revoke of w-3:\n%s", audit)
	}
	if !strings.Contains(audit, `class="chain ok"`) {
		t.Error("audit page does not show the hub's chain verification")
	}
	// Newest first: the revoke comes before the enrollments.
	if i, j := strings.Index(audit, "node.revoke"), strings.Index(audit, "<td>w-1</td>"); i < 0 || j < 0 || i > j {
		t.Error("audit page is not newest first")
	}
	if _, filtered := b.get(t, "/audit?q=node.revoke"); strings.Contains(filtered, "<td>w-1</td>") || !strings.Contains(filtered, "node.revoke") {
		t.Error("audit filter did not keep only the revoke")
	}
}

func TestFenceByOperator(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleOperator)
	_, page := b.get(t, "/nodes/w-3")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the role table lets operators fence; the page has no form")
	}
	if code, body := b.post(t, "/nodes/w-3/fence", url.Values{"csrf": {m[1]}, "confirm": {"w-3"}}); code != http.StatusSeeOther {
		t.Fatalf("operator fence = %d: %s", code, body)
	}
	if n, _ := h.store.Node("w-3"); n.State != hub.StateFenced || n.Reason.By != "operator (operator)" {
		t.Errorf("w-3 = %s by %v, want fenced by operator", n.State, n.Reason)
	}
}

func TestLiveOverview(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleAdmin)
	ctx := context.Background()
	if err := b.c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events", nil)
	res, err := b.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events Content-Type %q", ct)
	}
	events := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(res.Body)
		var ev strings.Builder
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(strings.TrimPrefix(line, "data: ") + "\n")
		}
		close(events)
	}()
	next := func() string {
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
			return ""
		}
	}
	const revokedWorker = "<tr><th>worker</th><td>2</td><td>0</td><td>0</td><td>1</td><td>1</td><td>0</td><td>0</td></tr>"
	if first := next(); !strings.Contains(first, "event: overview") || !strings.Contains(first, `<td id="total">3</td>`) || strings.Contains(first, revokedWorker) {
		t.Fatalf("first event:\n%s", first)
	}
	// A change made at the hub by someone else reaches the page at the next poll.
	if err := h.store.Revoke("someone", "w-3", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if e := next(); !strings.Contains(e, revokedWorker) || !strings.Contains(e, `href="/nodes/w-3"`) {
		t.Errorf("event after the revoke lacks the new counts:\n%s", e)
	}
	t.Logf("hub poll to event read: %v", time.Since(start))
	// No change, no event.
	if err := b.c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		t.Errorf("an event without a change:\n%s", e)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestNewRefusesNodeCertificate(t *testing.T) {
	if _, err := New(Config{Hub: fakeHub{}, Cert: &x509.Certificate{}}); err == nil {
		t.Error("a certificate without a role was accepted")
	}
}

// The whole path of a change made at the hub by someone else: the poller
// (Run) sees it and the open page gets the event. The time is logged, not
// asserted (docs/benchmarks.md).
func TestLiveLatency(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleAdmin)
	b.c.cfg.Poll = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.c.Run(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events", nil)
	res, err := b.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The first event is the state as it is.
	waitFor := func(want string) time.Time {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("event stream ended")
				}
				if strings.Contains(l, want) {
					return time.Now()
				}
			case <-timeout:
				t.Fatalf("no %q on the event stream within 10s", want)
			}
		}
	}
	waitFor(`<li class="s-quarantined">`)
	start := time.Now()
	if err := h.store.Fence("someone", "w-3", "test", start); err != nil {
		t.Fatal(err)
	}
	got := waitFor(`<li class="s-fenced">`)
	t.Logf("hub change to page event: %v (poll %v)", got.Sub(start), b.c.cfg.Poll)
}
