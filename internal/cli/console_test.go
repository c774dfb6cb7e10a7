package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
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

	keys := pkitest.WriteKeys(t, ca, pki.RoleReader)
	cctx, stop := context.WithCancel(ctx)
	var out, errb lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(cctx, []string{"console", "--hub", lis.Addr().String(), "--keys", keys, "--listen", "127.0.0.1:0", "--poll", "100ms"}, &out, &errb)
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
	for path, want := range map[string]string{"/builds": "This console was given no build", "/plan": "started without the cluster's spec", "/upgrades": "No node has an upgrade target"} {
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
