//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/sign"
)

// promDetail is what the prometheus node's health says of Prometheus (the
// prometheus controller's line: Prometheus's own targets and alerts).
func promDetail(t *testing.T, dir, apiAddr, name string) string {
	t.Helper()
	var h api.Health
	r := run(t, dir, nil, "node", "health", "--node", apiAddr, "--name", name, "--keys", "keys", "-o", "json")
	if json.Unmarshal([]byte(r.stdout), &h) != nil {
		return ""
	}
	for _, c := range h.Checks {
		if c.Name == "controller prometheus" {
			return c.Detail
		}
	}
	return ""
}

// waitProm polls the prometheus node's health until ok holds of its
// Prometheus line; it returns the last line and how long it took.
func waitProm(t *testing.T, dir, apiAddr, name string, timeout time.Duration, ok func(string) bool) (string, time.Duration, bool) {
	t.Helper()
	start, last := time.Now(), ""
	for time.Since(start) < timeout {
		if last = promDetail(t, dir, apiAddr, name); ok(last) {
			return last, time.Since(start), true
		}
		time.Sleep(5 * time.Second)
	}
	return last, time.Since(start), false
}

var targetsUp = regexp.MustCompile(`targets up (\d+)/(\d+)`)

// allUp: every active target answers, and there are at least n.
func allUp(n int) func(string) bool {
	return func(d string) bool {
		m := targetsUp.FindStringSubmatch(d)
		if m == nil || m[1] != m[2] {
			return false
		}
		var got int
		for _, c := range m[1] {
			got = got*10 + int(c-'0')
		}
		return got >= n
	}
}

// checkPrometheus: the prometheus node, converged by kubedosd from the
// hub's configuration, scrapes every enrolled node's kubedosd and the hub
// over wg-observability with its hub-issued reader certificate (each
// node's name checked), and itself: all up. Neither Prometheus nor the
// hub's metrics answer on the LAN.
func checkPrometheus(t *testing.T, dir, monAPI, mon string, nodes int, lanHosts ...string) {
	t.Helper()
	// kubedosd of every node, the hub, Prometheus itself.
	want := nodes + 2
	d, took, ok := waitProm(t, dir, monAPI, mon, 4*time.Minute, allUp(want))
	if !ok {
		t.Errorf("Prometheus on %s never had its %d targets up: %q", mon, want, d)
		return
	}
	t.Logf("FIGURE Prometheus on %s: every target up %.0fs after the cluster was up (%s)", mon, took.Seconds(), d)
	for _, hp := range lanHosts {
		c, err := net.DialTimeout("tcp", hp, 3*time.Second)
		var ne net.Error
		switch {
		case err == nil:
			c.Close()
			t.Errorf("%s answers on the LAN: only wg-observability may reach it", hp)
		case errors.As(err, &ne) && ne.Timeout(), strings.Contains(err.Error(), "refused"):
		default:
			t.Errorf("%s on the LAN: %v", hp, err)
		}
	}
}

// checkRevokedAlert: once node is fenced, Prometheus stops scraping it (no
// target down) and fires KubedosNodeRevokedOrFenced for it.
func checkRevokedAlert(t *testing.T, dir, monAPI, mon, node string, fenced time.Time) {
	t.Helper()
	d, _, ok := waitProm(t, dir, monAPI, mon, 4*time.Minute, func(d string) bool {
		m := targetsUp.FindStringSubmatch(d)
		return m != nil && m[1] == m[2] && strings.Contains(d, "KubedosNodeRevokedOrFenced{node="+node+"}")
	})
	if !ok {
		t.Errorf("no KubedosNodeRevokedOrFenced for %s with %s out of the targets: %q", node, node, d)
		return
	}
	// The master's hub.addr was reported as unexpected once its second
	// drift check ran: no drift alert on a cluster nobody changed.
	if strings.Contains(d, "KubedosDriftDetected") {
		t.Errorf("drift alert on a fresh cluster: %s", d)
	}
	// At most: the alert fired before the first poll that saw it.
	t.Logf("FIGURE fence of %s to its alert firing: at most %.0fs (%s)", node, time.Since(fenced).Seconds(), d)
}

// checkDashboards: the prometheus node (the local example has no grafana
// node) serves the dashboards to a cluster certificate over the LAN; the
// fleet page counts the enrolled nodes from Prometheus. The page is saved
// and headless Chromium takes its picture (the pages are self-contained:
// inline SVG, no script).
func checkDashboards(t *testing.T, dir, addr string, enrolled int) {
	t.Helper()
	keys := filepath.Join(dir, "keys")
	pair, err := tls.LoadX509KeyPair(filepath.Join(keys, sign.FileAdminCert), filepath.Join(keys, sign.FileAdminKey))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(keys, sign.FileCACert))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	fetch := func(cert []tls.Certificate, page string) (int, string, error) {
		cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "mon", Certificates: cert, MinVersion: tls.VersionTLS13}}}
		defer cl.CloseIdleConnections()
		res, err := cl.Get("https://" + addr + "/" + page)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
		return res.StatusCode, string(b), err
	}
	get := func(cert []tls.Certificate) (int, string, error) { return fetch(cert, "fleet") }
	want := regexp.MustCompile(`(?s)id="enrolled".{0,300}?class="stat-value">` + strconv.Itoa(enrolled) + `<`)
	var body string
	start := time.Now()
	for time.Since(start) < 3*time.Minute {
		code, b, err := get([]tls.Certificate{pair})
		body = b
		if err == nil && code == http.StatusOK && want.MatchString(b) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	if !want.MatchString(body) {
		t.Errorf("the fleet dashboard on %s never showed %d enrolled nodes:\n%.2000s", addr, enrolled, body)
		return
	}
	t.Logf("FIGURE dashboards on %s: the fleet page shows %d enrolled %.0fs after Prometheus was up", addr, enrolled, time.Since(start).Seconds())
	if _, _, err := get(nil); err == nil {
		t.Errorf("the dashboards on %s answer without a client certificate", addr)
	}
	page := filepath.Join(dir, "fleet.html")
	if err := os.WriteFile(page, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// Its stylesheet beside it, where the page's relative link finds it.
	if code, css, err := fetch([]tls.Certificate{pair}, "static/dash.css"); err != nil || code != http.StatusOK {
		t.Logf("the dashboards' stylesheet: %d %v (the picture is unstyled)", code, err)
	} else if err := os.MkdirAll(filepath.Join(dir, "static"), 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "static", "dash.css"), []byte(css), 0o644)
	}
	// KUBEDOS_ARTIFACTS keeps it past the test's directory.
	shotDir := dir
	if a := os.Getenv("KUBEDOS_ARTIFACTS"); a != "" {
		shotDir = a
	}
	shot := filepath.Join(shotDir, "dashboards-fleet.png")
	out, err := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
		"--screenshot="+shot, "file://"+page).CombinedOutput()
	if fi, serr := os.Stat(shot); err != nil || serr != nil || fi.Size() < 10000 {
		t.Errorf("chromium screenshot of the fleet page: %v %v\n%s", err, serr, out)
		return
	}
	t.Logf("the fleet dashboard, as Chromium draws it: %s", shot)
}
