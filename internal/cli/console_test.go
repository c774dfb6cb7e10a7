package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
)

type anyBuild struct{}

func (anyBuild) Expected(string, string) (string, measure.Prediction, error) {
	return "b1", measure.Prediction{}, nil
}

// lockedBuffer is written by the command and read by the test meanwhile.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// kubedos console against a real hub: it prints a login address, the
// page behind it shows the hub's nodes, and it stops with its context.
func TestConsoleServes(t *testing.T) {
	ca := pkitest.NewCA(t)
	st, err := hub.Open(t.TempDir() + "/hub.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := hub.New(hub.Options{Store: st, CA: ca, Verifier: hub.AttestVerifier{}, Policy: anyBuild{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RegisterEK("test", "w-7", strings.Repeat("ab", 32), time.Now()); err != nil {
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
	defer cancel()
	go srv.Serve(ctx, lis)

	// A Prometheus with no data: the dashboards say so.
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	defer prom.Close()

	keys := pkitest.WriteKeys(t, ca, pki.RoleReader)
	cctx, stop := context.WithCancel(ctx)
	var out, errb lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(cctx, []string{"console", "--hub", lis.Addr().String(), "--keys", keys, "--listen", "127.0.0.1:0", "--poll", "100ms", "--prometheus", prom.URL}, &out, &errb)
	}()
	var login string
	for deadline := time.Now().Add(10 * time.Second); login == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s := out.String(); strings.HasSuffix(s, "\n") {
			login = strings.TrimSpace(s)
		}
	}
	if !strings.HasPrefix(login, "https://127.0.0.1:") || !strings.Contains(login, "/login?token=") {
		t.Fatalf("no login address printed: stdout %q stderr %q", out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "certificate SHA-256 ") || !strings.Contains(errb.String(), `acting as "reader"`) {
		t.Errorf("stderr lacks the fingerprint or the operator: %q", errb.String())
	}
	jar, _ := cookiejar.New(nil)
	// The browser is told the fingerprint; the test skips the check.
	cl := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: insecureForTest()}}
	res, err := cl.Get(login)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `href="/nodes/w-7"`) {
		t.Errorf("overview after login: %d\n%s", res.StatusCode, body)
	}
	base := strings.Split(login, "/login")[0]
	if !strings.Contains(errb.String(), "/dashboards/ from the Prometheus at "+prom.URL) || strings.Contains(errb.String(), "WARNING: the dashboards") {
		t.Errorf("stderr does not say where the dashboards are, or warns: %q", errb.String())
	}
	for path, want := range map[string]string{"/builds": "This console was given no build", "/plan": "started without the cluster's spec", "/upgrades": "No node has an upgrade target",
		"/dashboards/fleet": "no data: the hub is not scraped"} {
		res, err := cl.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, lacks %q", path, res.StatusCode, want)
		}
	}
	stop()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("console exited %d after its context ended: %s", c, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop with its context")
	}
}

func TestConsoleRefusesUnreachableHub(t *testing.T) {
	ca := pkitest.NewCA(t)
	keys := pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if c := Run(ctx, []string{"console", "--hub", addr, "--keys", keys, "--listen", "127.0.0.1:0"}, &out, &errb); c == 0 || out.Len() != 0 {
		t.Errorf("console with no hub: exit %d, stdout %q", c, out.String())
	}
	if !strings.Contains(errb.String(), addr) {
		t.Errorf("error does not name the hub %s: %s", addr, errb.String())
	}
}

func insecureForTest() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // a test of our own server

// A --build that is not a build stops the console before it serves.
func TestConsoleRefusesMissingBuild(t *testing.T) {
	ca := pkitest.NewCA(t)
	keys := pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	var out, errb lockedBuffer
	code := Run(context.Background(), []string{"console", "--hub", "127.0.0.1:1", "--keys", keys, "--listen", "127.0.0.1:0",
		"--build", t.TempDir() + "/none", "--out", t.TempDir()}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "/none: no such build directory") || out.String() != "" {
		t.Errorf("console with a missing build: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// --prometheus-ca must be a CA certificate, and goes with --prometheus.
func TestConsoleRefusesBadPrometheusCA(t *testing.T) {
	ca := pkitest.NewCA(t)
	keys := pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	notPEM := t.TempDir() + "/ca.crt"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--prometheus", "http://127.0.0.1:9090", "--prometheus-ca", notPEM}, "--prometheus-ca " + notPEM + ": no PEM certificate in it"},
		{[]string{"--prometheus", "http://127.0.0.1:9090", "--prometheus-ca", notPEM + ".missing"}, "--prometheus-ca: open " + notPEM + ".missing"},
		{[]string{"--prometheus-ca", notPEM}, "give --prometheus too"},
		{[]string{"--prometheus", "127.0.0.1:9090"}, `prometheus URL "127.0.0.1:9090"`},
	} {
		var out, errb lockedBuffer
		code := Run(context.Background(), append([]string{"console", "--hub", "127.0.0.1:1", "--keys", keys, "--listen", "127.0.0.1:0"}, tt.args...), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), tt.want) || out.String() != "" {
			t.Errorf("console %v: exit %d, stdout %q, stderr %q, want %q", tt.args, code, out.String(), errb.String(), tt.want)
		}
	}
}

// kubedos console login asks the hub for a link as the operator whose
// certificate it holds: printed on stdout, at most the certificate's
// role; a hub that serves no console says so.
func TestConsoleLogin(t *testing.T) {
	ca := pkitest.NewCA(t)
	st, err := hub.Open(t.TempDir() + "/hub.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := hub.New(hub.Options{Store: st, CA: ca, Verifier: hub.AttestVerifier{}, Policy: anyBuild{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := func(console bool) string {
		srv, err := hub.NewServer(h, ca, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if console {
			srv.ServeConsole("https://10.20.0.10:8443")
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ctx, lis)
		return lis.Addr().String()
	}
	addr := serve(true)
	keys := pkitest.WriteKeys(t, ca, pki.RoleOperator)
	var out, errb bytes.Buffer
	if code := Run(ctx, []string{"console", "login", "--hub", addr, "--keys", keys, "--role", "reader"}, &out, &errb); code != 0 {
		t.Fatalf("console login: %d: %s", code, errb.String())
	}
	if link := strings.TrimSpace(out.String()); !strings.HasPrefix(link, "https://10.20.0.10:8443/login?t=") || len(link) != len("https://10.20.0.10:8443/login?t=")+64 {
		t.Errorf("link %q", link)
	}
	if !strings.Contains(errb.String(), "(reader)") {
		t.Errorf("stderr does not say the session's role: %q", errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := Run(ctx, []string{"console", "login", "--hub", addr, "--keys", keys, "--role", "admin"}, &out, &errb); code == 0 || out.Len() != 0 {
		t.Errorf("an operator got an admin link: %q", out.String())
	}
	errb.Reset()
	if code := Run(ctx, []string{"console", "login", "--hub", serve(false), "--keys", keys}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "serves no web console") {
		t.Errorf("a hub without a console: %d %q", code, errb.String())
	}
}
