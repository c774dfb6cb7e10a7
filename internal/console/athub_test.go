package console

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/hubhost"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/spec"
)

// masterHub is a hub served as the master's kubedosd serves it
// (hubhost.Open, its gRPC API, and ServeAtHub beside it on loopback),
// with w-1 and w-2 enrolled.
type masterHub struct {
	h        *hubhost.Hub
	ca       *pki.CA
	grpcAddr string
	url      string // the console, https://127.0.0.1:PORT
}

func startMasterHub(t *testing.T) *masterHub {
	t.Helper()
	ca := pkitest.NewCA(t)
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse([]byte(`{"kind":"BuildManifest","cluster":"local","buildID":"b-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	h, err := hubhost.Open(context.Background(), hubhost.Config{Spec: s, Manifest: (*manifest.Manifest)(m), CA: ca,
		StatePath: filepath.Join(t.TempDir(), "hub.db"), Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	st := h.Store()
	now := time.Now()
	for _, name := range []string{"w-1", "w-2"} {
		if err := st.RegisterEK("test", name, ekOf(name), now); err != nil {
			t.Fatal(err)
		}
		secret, nonce := []byte("secret-"+name), []byte("nonce-"+name)
		sh := sha256.Sum256(secret)
		id := "s-" + name
		if err := st.BeginSession(hub.Session{ID: id, Kind: hub.KindEnroll, Name: name, Role: "worker", EKHash: ekOf(name), SecretHash: sh[:],
			Created: now, Expires: now.Add(10 * time.Minute)}, hub.EKFacts{}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Activate(id, secret, nonce, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
		if _, err := st.TakeNonce(id, nonce, now); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CompleteEnrollment(id, hub.Enrollment{BuildID: "b-1", Cert: hub.Cert{Serial: "a" + name[2:], NotAfter: now.Add(time.Hour)}}, now); err != nil {
			t.Fatal(err)
		}
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, consoleDone := make(chan error, 1), make(chan error, 1)
	go func() { consoleDone <- ServeAtHub(ctx, h, clis, AtHubOptions{}) }()
	go func() { hubDone <- h.Serve(ctx, glis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-consoleDone; err != nil {
			t.Errorf("console: %v", err)
		}
		<-hubDone
	})
	mh := &masterHub{h: h, ca: ca, grpcAddr: glis.Addr().String(), url: "https://" + clis.Addr().String()}
	// The console makes the hub answer ConsoleLogin once it serves.
	waitFor(t, func() bool {
		_, err := mh.admin(t, mh.cert(t, "probe", pki.RoleReader)).ConsoleLogin(context.Background(), "")
		return err == nil
	})
	return mh
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("timed out")
}

// cert is an operator certificate of the cluster CA.
func (mh *masterHub) cert(t *testing.T, name string, role pki.Role) *tls.Certificate {
	t.Helper()
	is, err := mh.ca.IssueClient(name, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	c.Leaf = is.Cert
	return &c
}

// admin is the hub's admin API over mTLS as cert, as kubedos dials it.
func (mh *masterHub) admin(t *testing.T, cert *tls.Certificate) *api.AdminClient {
	t.Helper()
	conf := pki.HubClientTLS(mh.ca.Pool())
	conf.Certificates = []tls.Certificate{*cert}
	cc, err := api.Dial(mh.grpcAddr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewAdminClient(cc)
}

// login asks the hub for a login link as cert with role.
func (mh *masterHub) login(t *testing.T, cert *tls.Certificate, role pki.Role) string {
	t.Helper()
	got, err := mh.admin(t, cert).ConsoleLogin(context.Background(), string(role))
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != mh.url {
		t.Fatalf("link to %s, the console is at %s", got.URL, mh.url)
	}
	return got.URL + "/login?t=" + got.Token
}

// hubBrowser is a browser of the console at the hub: it trusts the
// cluster CA (as an operator who imported ca.crt does) and presents cert
// when given.
type hubBrowser struct {
	cl   *http.Client
	base string
}

func (mh *masterHub) browser(t *testing.T, cert *tls.Certificate) *hubBrowser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	conf := &tls.Config{RootCAs: mh.ca.Pool(), MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: conf}
	t.Cleanup(tr.CloseIdleConnections)
	return &hubBrowser{base: mh.url, cl: &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *hubBrowser) do(t *testing.T, method, path string, form url.Values) (int, string) {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = b.base + path
	}
	var res *http.Response
	var err error
	if method == http.MethodPost {
		res, err = b.cl.PostForm(u, form)
	} else {
		res, err = b.cl.Get(u)
	}
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func (b *hubBrowser) get(t *testing.T, path string) (int, string) {
	return b.do(t, http.MethodGet, path, nil)
}

// act posts an action with the CSRF token of the node page.
func (b *hubBrowser) act(t *testing.T, node, action string) (int, string) {
	t.Helper()
	_, page := b.get(t, "/nodes/"+node)
	tok := ""
	if m := csrfField.FindStringSubmatch(page); m != nil {
		tok = m[1]
	}
	return b.do(t, http.MethodPost, "/nodes/"+node+"/"+action, url.Values{"csrf": {tok}, "confirm": {node}, "reason": {"from the test"}})
}

func auditAtHub(t *testing.T, h *hubhost.Hub, actor, action, target string) bool {
	t.Helper()
	all, err := h.Store().Audit(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.Actor == actor && e.Action == action && e.Target == target {
			return true
		}
	}
	return false
}

func stateOf(t *testing.T, h *hubhost.Hub, name string) api.NodeState {
	t.Helper()
	n, err := h.Store().Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n.State
}

// TestAtHubClientCertificate: a browser with an operator certificate is
// that operator, by the hub's role table: a reader sees no action and is
// refused one; an operator fences; an admin revokes, audited under the
// admin, not the hub or the master.
func TestAtHubClientCertificate(t *testing.T) {
	mh := startMasterHub(t)
	if code, _ := mh.browser(t, nil).get(t, "/"); code != http.StatusUnauthorized {
		t.Errorf("no certificate, no link: %d, want 401", code)
	}
	reader := mh.browser(t, mh.cert(t, "rita", pki.RoleReader))
	code, body := reader.get(t, "/")
	if code != http.StatusOK || !strings.Contains(body, `href="/nodes/w-1"`) || !strings.Contains(body, "<b>rita</b> (reader)") {
		t.Fatalf("reader's overview: %d\n%s", code, body)
	}
	if !auditAtHub(t, mh.h, "rita (reader)", hub.ActionConsoleSession, "console") {
		t.Error("the reader's session is not in the audit log")
	}
	_, body = reader.get(t, "/nodes/w-1")
	if strings.Contains(body, `action="/nodes/w-1/revoke"`) || !strings.Contains(body, `id="node-api-note"`) {
		t.Errorf("reader's node page: revoke form or no note on the node API:\n%s", body)
	}
	if code, msg := reader.act(t, "w-1", "revoke"); code != http.StatusForbidden || !strings.Contains(msg, "may not") {
		t.Errorf("reader's revoke POST: %d %s, want 403", code, msg)
	}
	if s := stateOf(t, mh.h, "w-1"); s != hub.StateEnrolled {
		t.Errorf("w-1 is %s after a reader's POST", s)
	}

	op := mh.browser(t, mh.cert(t, "olga", pki.RoleOperator))
	_, body = op.get(t, "/nodes/w-2")
	for _, form := range []string{"fence", "revoke", "replace"} {
		if !strings.Contains(body, `action="/nodes/w-2/`+form+`"`) {
			t.Errorf("operator's node page lacks the %s form", form)
		}
	}
	for _, form := range []string{"upgrade", "restart"} {
		if strings.Contains(body, `action="/nodes/w-2/`+form+`"`) {
			t.Errorf("the console at the hub offers %s (it needs the operator's key at the node)", form)
		}
	}
	if code, msg := op.act(t, "w-2", "fence"); code != http.StatusSeeOther {
		t.Fatalf("operator's fence: %d %s", code, msg)
	}
	if s := stateOf(t, mh.h, "w-2"); s != hub.StateFenced || !auditAtHub(t, mh.h, "olga (operator)", string(pki.ActionFence), "w-2") {
		t.Errorf("w-2 is %s, fence audited under olga: %v", s, auditAtHub(t, mh.h, "olga (operator)", string(pki.ActionFence), "w-2"))
	}

	adminCert := mh.cert(t, "alice", pki.RoleAdmin)
	admin := mh.browser(t, adminCert)
	if code, msg := admin.act(t, "w-1", "revoke"); code != http.StatusSeeOther {
		t.Fatalf("admin's revoke: %d %s", code, msg)
	}
	if s := stateOf(t, mh.h, "w-1"); s != hub.StateRevoked || !auditAtHub(t, mh.h, "alice (admin)", string(pki.ActionRevoke), "w-1") {
		t.Errorf("w-1 is %s; revoke audited under alice (admin): %v", s, auditAtHub(t, mh.h, "alice (admin)", string(pki.ActionRevoke), "w-1"))
	}
	if _, body := admin.get(t, "/audit"); !strings.Contains(body, "alice (admin)") || !strings.Contains(body, "node.revoke") {
		t.Error("the admin's revoke is not on the audit page")
	}

	// Revoking the admin's certificate ends its session at the next request.
	if _, err := mh.admin(t, mh.cert(t, "root-admin", pki.RoleAdmin)).RevokeClient(context.Background(), adminCert.Certificate[0], "lost"); err != nil {
		t.Fatal(err)
	}
	if code, body := admin.get(t, "/"); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("revoked admin certificate: %d, want 401 saying revoked\n%s", code, body)
	}
}

// TestAtHubRefusesOtherCertificates: a node's certificate, the hub's own
// and one of another CA are no console user.
func TestAtHubRefusesOtherCertificates(t *testing.T) {
	mh := startMasterHub(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "w-1", Organization: []string{pki.OrgNode}, OrganizationalUnit: []string{"worker"}},
		DNSNames: []string{"w-1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := mh.ca.SignNodeCSR(csr, "w-1", "worker", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	node := mh.browser(t, &tls.Certificate{Certificate: [][]byte{nodeCert.Raw}, PrivateKey: key, Leaf: nodeCert})
	if code, body := node.get(t, "/"); code != http.StatusUnauthorized || !strings.Contains(body, "node certificate") {
		t.Errorf("node certificate: %d, want 401 naming it\n%s", code, body)
	}
	hubIs, err := mh.ca.IssueServer([]string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hubCert, _ := hubIs.TLSCertificate()
	// A server certificate is not good for client auth: the handshake
	// itself refuses it, and it carries no role besides.
	if code, _ := mh.browser(t, &hubCert).get(t, "/"); code == http.StatusOK {
		t.Error("the hub's own certificate opened a console session")
	}
	other := pkitest.NewCA(t)
	is, _ := other.IssueClient("mallory", pki.RoleAdmin, time.Hour, time.Now())
	oc, _ := is.TLSCertificate()
	if code, _ := mh.browser(t, &oc).get(t, "/"); code == http.StatusOK {
		t.Error("an admin certificate of another CA opened a console session")
	}
}

// TestAtHubLoginLink: the link the hub mints opens one session as the
// operator who asked, with the role asked (at most theirs), once.
func TestAtHubLoginLink(t *testing.T) {
	mh := startMasterHub(t)
	olga := mh.cert(t, "olga", pki.RoleOperator)
	link := mh.login(t, olga, "")
	b := mh.browser(t, nil) // no certificate in this browser
	if code, _ := b.get(t, link); code != http.StatusSeeOther {
		t.Fatalf("opening the link: %d, want 303", code)
	}
	if code, body := b.get(t, "/nodes/w-1"); code != http.StatusOK || !strings.Contains(body, "<b>olga</b> (operator)") || !strings.Contains(body, `action="/nodes/w-1/revoke"`) {
		t.Errorf("session by link: %d\n%s", code, body)
	}
	if code, _ := mh.browser(t, nil).get(t, link); code != http.StatusUnauthorized {
		t.Errorf("the link opened twice: %d, want 401", code)
	}
	if code, _ := mh.browser(t, nil).get(t, mh.url+"/login?t="+strings.Repeat("ab", 32)); code != http.StatusUnauthorized {
		t.Errorf("a forged link: %d, want 401", code)
	}
	// An operator's reader link: no actions, and a forged POST refused.
	rb := mh.browser(t, nil)
	rb.get(t, mh.login(t, olga, pki.RoleReader))
	if _, body := rb.get(t, "/nodes/w-1"); strings.Contains(body, `action="/nodes/w-1/revoke"`) || !strings.Contains(body, "<b>olga</b> (reader)") {
		t.Errorf("reader session of an operator:\n%s", body)
	}
	if code, _ := rb.act(t, "w-1", "revoke"); code != http.StatusForbidden {
		t.Errorf("reader session's revoke: %d, want 403", code)
	}
	if _, err := mh.admin(t, olga).ConsoleLogin(context.Background(), "admin"); err == nil {
		t.Error("an operator got an admin link")
	}
	// A POST never opens a session, even with a certificate: the CSRF
	// token comes from a page of a session.
	op := mh.browser(t, olga)
	if code, _ := op.do(t, http.MethodPost, "/nodes/w-1/revoke", url.Values{"confirm": {"w-1"}}); code != http.StatusUnauthorized {
		t.Errorf("a first POST with a certificate: %d, want 401", code)
	}
	if s := stateOf(t, mh.h, "w-1"); s != hub.StateEnrolled {
		t.Errorf("w-1 is %s", s)
	}
}
