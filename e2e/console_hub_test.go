//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/sign"
)

var loginLink = regexp.MustCompile(`^https://10\.20\.0\.10:8443/login\?t=[0-9a-f]{64}$`)

// consoleClient is a browser-like client of the console the hub serves on
// the master: the cluster CA as its only root (the console's certificate
// must name the master's address), a cookie jar, no redirects followed
// past what it is told, an optional client certificate.
func consoleClient(t *testing.T, dir string, cert []tls.Certificate) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "keys", sign.FileCACert))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	return &http.Client{Timeout: 30 * time.Second, Jar: jar, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: cert, MinVersion: tls.VersionTLS12}}}
}

func consoleGet(t *testing.T, cl *http.Client, u string) (int, string) {
	t.Helper()
	res, err := cl.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	return res.StatusCode, string(b)
}

// checkConsoleAtHub (issue 18) runs against the live local cluster once
// the master keeps the hub: the console on master:8443 with a certificate
// the cluster CA made for the master's address; an admin's certificate
// logs in directly; a reader's one-time link opens a reader's session
// (once only), which sees no revoke form and whose forged revoke is
// refused; a link above the certificate's role is refused; an admin revokes
// victim through the console and the audit page shows it under the admin's
// name; Chromium draws the overview; the reader's certificate revoked ends
// its session; no other node answers on 8443.
func checkConsoleAtHub(t *testing.T, dir, victim, worker string) {
	t.Helper()
	const base = "https://10.20.0.10:8443"
	if st := must(t, dir, "cluster", "status", "cluster.yaml", "--keys", "keys"); !strings.Contains(st, "console: "+base+"/") {
		t.Errorf("cluster status does not print the console:\n%s", st)
	}
	keys := filepath.Join(dir, "keys")
	admin, err := tls.LoadX509KeyPair(filepath.Join(keys, sign.FileAdminCert), filepath.Join(keys, sign.FileAdminKey))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body := consoleGet(t, consoleClient(t, dir, []tls.Certificate{admin}), base+"/")
	if code != http.StatusOK || !strings.Contains(body, "(admin)") || !strings.Contains(body, `href="/nodes/`+victim+`"`) {
		t.Fatalf("the console with the admin's certificate: %d\n%.1500s", code, body)
	}
	t.Logf("FIGURE console overview on the master with a client certificate: %.0f ms", float64(time.Since(start).Milliseconds()))

	must(t, dir, "keys", "issue", "rosa", "--role", "reader", "--keys", "keys", "--out", "creds")
	asRosa := []string{"--spec", "cluster.yaml", "--keys", "keys", "--cert", "creds/rosa.crt", "--key", "creds/rosa.key"}
	link := strings.TrimSpace(must(t, dir, append([]string{"console", "login"}, asRosa...)...))
	if !loginLink.MatchString(link) {
		t.Fatalf("console login printed %q", link)
	}
	rosa := consoleClient(t, dir, nil)
	if code, body := consoleGet(t, rosa, link); code != http.StatusOK || !strings.Contains(body, "rosa") || !strings.Contains(body, "(reader)") {
		t.Fatalf("rosa's link: %d\n%.1500s", code, body)
	}
	if code, _ := consoleGet(t, consoleClient(t, dir, nil), link); code != http.StatusUnauthorized {
		t.Errorf("the link opened a second time: %d, want 401", code)
	}
	_, page := consoleGet(t, rosa, base+"/nodes/"+victim)
	if strings.Contains(page, `action="/nodes/`+victim+`/revoke"`) {
		t.Errorf("a reader is offered the revoke form:\n%.1500s", page)
	}
	res, err := rosa.PostForm(base+"/nodes/"+victim+"/revoke", url.Values{"csrf": {"x"}, "confirm": {victim}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("a reader's forged revoke: %d, want 403", res.StatusCode)
	}
	if r := run(t, dir, nil, append([]string{"console", "login", "--role", "admin"}, asRosa...)...); r.code == 0 || !strings.Contains(r.stderr, "PermissionDenied") {
		t.Errorf("a reader asking for an admin session: exit %d\n%s", r.code, r.stderr)
	}

	// The admin revokes victim through the console: the form's CSRF token
	// and the confirmation naming the node.
	ada := consoleClient(t, dir, nil)
	consoleGet(t, ada, strings.TrimSpace(must(t, dir, "console", "login", "--spec", "cluster.yaml", "--keys", "keys")))
	_, page = consoleGet(t, ada, base+"/nodes/"+victim)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, `action="/nodes/`+victim+`/revoke"`) {
		t.Fatalf("the admin's node page has no revoke form:\n%.2000s", page)
	}
	ada.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err = ada.PostForm(base+"/nodes/"+victim+"/revoke", url.Values{"csrf": {m[1]}, "confirm": {victim}, "reason": {"e2e console"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("the admin's revoke: %d, want 303", res.StatusCode)
	}
	ada.CheckRedirect = nil
	if _, audit := consoleGet(t, ada, base+"/audit"); !strings.Contains(audit, "node.revoke") || !strings.Contains(audit, victim) || !strings.Contains(audit, "(admin)") {
		t.Errorf("the audit page does not show the revoke of %s:\n%.3000s", victim, audit)
	}
	if got := must(t, dir, "node", "get", victim, "--spec", "cluster.yaml", "--keys", "keys"); !strings.Contains(got, "revoked") {
		t.Errorf("after the console's revoke, %s is:\n%s", victim, got)
	}

	// Chromium draws the overview (a link of its own: each works once).
	shotDir := dir
	if a := os.Getenv("KUBEDOS_ARTIFACTS"); a != "" {
		shotDir = a
	}
	shot := filepath.Join(shotDir, "console-master-overview.png")
	link = strings.TrimSpace(must(t, dir, "console", "login", "--spec", "cluster.yaml", "--keys", "keys", "--role", "reader"))
	out, err := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
		"--user-data-dir="+filepath.Join(dir, "chromium"), "--window-size=1280,900", "--screenshot="+shot, link).CombinedOutput()
	if fi, serr := os.Stat(shot); err != nil || serr != nil || fi.Size() < 10000 {
		t.Errorf("chromium screenshot of the master's console: %v %v\n%s", err, serr, out)
	} else {
		t.Logf("the master's console, as Chromium draws it: %s", shot)
	}

	// rosa's certificate revoked: her session ends at the next request.
	must(t, dir, "keys", "revoke", "creds/rosa.crt", "--spec", "cluster.yaml", "--keys", "keys", "--reason", "e2e")
	if code, body := consoleGet(t, rosa, base+"/"); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("rosa's session after her certificate was revoked: %d\n%.500s", code, body)
	}
	// Only the master serves it.
	if c, err := net.DialTimeout("tcp", worker+":8443", 3*time.Second); err == nil {
		c.Close()
		t.Errorf("%s answers on 8443", worker)
	}
}

// checkConsoleQuarantine (issue 18): the operator's own console (kubedos
// console, against the live hub that just quarantined node) shows the
// node's full quarantine reason: the check and its detail.
func checkConsoleQuarantine(t *testing.T, dir, hubAddr, node, check, detail string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(bin, "kubedos"), "console", "--hub", hubAddr, "--keys", "keys", "--listen", listen)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	first := make(chan string, 1)
	go func() {
		b := make([]byte, 512)
		n, _ := io.ReadAtLeast(stdout, b, 1)
		first <- strings.TrimSpace(strings.SplitN(string(b[:n]), "\n", 2)[0])
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var link string
	select {
	case link = <-first:
	case <-time.After(time.Minute):
		t.Fatal("kubedos console printed no address in a minute")
	}
	if !strings.HasPrefix(link, "https://"+listen+"/login?token=") {
		t.Fatalf("kubedos console printed %q", link)
	}
	jar, _ := cookiejar.New(nil)
	// Its certificate is made at start (its fingerprint printed for a
	// person to compare); this client trusts it as that person would.
	cl := &http.Client{Timeout: 30 * time.Second, Jar: jar, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the console's own self-made certificate
	consoleGet(t, cl, link)
	code, page := consoleGet(t, cl, "https://"+listen+"/nodes/"+node)
	if code != http.StatusOK || !strings.Contains(page, check) || !strings.Contains(page, detail) || !strings.Contains(page, "quarantined") {
		t.Errorf("the console's page of quarantined %s (%d) lacks %q / %q:\n%.3000s", node, code, check, detail, page)
	} else {
		t.Logf("the console shows %s quarantined: %s: %s", node, check, detail)
	}
}
