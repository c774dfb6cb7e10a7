package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/wg"
)

// serveMetrics runs the metrics endpoint of e's node on loopback.
func serveMetrics(t *testing.T, e *nodeEnv) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.api.ServeMetrics(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve metrics: %v", err)
		}
	})
	return "https://" + lis.Addr().String() + "/metrics"
}

func scrape(t *testing.T, e *nodeEnv, url string, cert *tls.Certificate) (int, string, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "w-1", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	res, err := cl.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func TestMetricsCountDrift(t *testing.T) {
	e := newNodeEnv(t)
	url := serveMetrics(t, e)
	reader := clientCert(t, e.ca, "prometheus", pki.RoleReader)

	code, body, err := scrape(t, e, url, reader)
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", code, err, body)
	}
	for _, want := range []string{
		`kubedos_node_info{node="w-1",role="worker",build="b-0011",slot="a"} 1`,
		`kubedos_drift_items{kind="unexpected"} 0`,
		`kubedos_drift_checks_total 1`,
		`kubedos_drift_detected_total 0`,
		`kubedos_health_check{check="enrolled",critical="true"} 1`,
		"# TYPE kubedos_drift_detected_total counter",
		"kubedos_certificate_expiry_timestamp_seconds " + itoa(e.nodeCert.NotAfter.Unix()),
		"kubedos_certificate_renew_timestamp_seconds " + itoa(RenewAt(e.nodeCert).Unix()),
		"kubedos_revocations_max_age_seconds " + itoa(int64(e.api.cfg.RevocationMaxAge.Seconds())),
		"kubedos_revocations_fetched_timestamp_seconds " + itoa(unixOrZero(e.api.fetchedAt())),
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	checkMetricsText(t, body)

	// Two files nobody manages on the state partition: counted at the next scrape.
	must(t, os.WriteFile(filepath.Join(e.stateDir, "stray.sh"), []byte("#!/bin/sh"), 0o755))
	must(t, os.WriteFile(filepath.Join(e.stateDir, "stray.conf"), nil, 0o644))
	_, body, err = scrape(t, e, url, reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`kubedos_drift_items{kind="unexpected"} 2`, `kubedos_drift_checks_total 2`, `kubedos_drift_detected_total 1`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("after drift, metrics lack %q:\n%s", want, body)
		}
	}

	// No certificate: the handshake itself fails. A revoked one: 401.
	if _, _, err := scrape(t, e, url, nil); err == nil {
		t.Error("a scrape without a client certificate was served")
	}
	revoked := clientCert(t, e.ca, "eve", pki.RoleAdmin)
	must(t, e.revs.Update([]string{pki.SerialString(revoked.Leaf.SerialNumber)}, time.Now()))
	if code, body, err := scrape(t, e, url, revoked); err != nil || code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("revoked certificate: %d %v %q", code, err, body)
	}
	audits := e.auditLog()
	if len(audits) == 0 || audits[len(audits)-1].Method != "Metrics" || audits[len(audits)-1].Outcome != "unauthenticated" {
		t.Errorf("the refused scrape was not audited: %+v", audits)
	}
}

func TestWatchDriftLogsChanges(t *testing.T) {
	clock := newFakeClock()
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.Clock = clock; c.Now = time.Now })
	var lines []string
	logs := make(chan string, 16)
	e.api.cfg.Logf = func(f string, a ...any) {
		if l := fmt.Sprintf(f, a...); strings.HasPrefix(l, "drift: ") {
			logs <- l
		}
	}
	must(t, os.WriteFile(filepath.Join(e.stateDir, "stray.sh"), nil, 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.api.WatchDrift(ctx, 5*time.Minute); close(done) }()
	clock.awaitWaiters(t, 1)
	lines = append(lines, <-logs)
	// Unchanged drift is not logged again; its repair is, at the next round.
	clock.Advance(5 * time.Minute)
	clock.awaitWaiters(t, 1)
	if len(logs) != 0 {
		t.Errorf("unchanged drift logged again: %q", <-logs)
	}
	must(t, os.Remove(filepath.Join(e.stateDir, "stray.sh")))
	clock.Advance(5 * time.Minute)
	clock.awaitWaiters(t, 1)
	lines = append(lines, <-logs)
	cancel()
	<-done
	if !strings.Contains(lines[0], "unexpected "+filepath.Join(e.stateDir, "stray.sh")) || !strings.Contains(lines[1], "none") {
		t.Errorf("drift log: %q", lines)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// The planes in the metrics: joined, each interface up, each peer's latest
// handshake and traffic, as the kernel reports them.
func TestPlaneMetrics(t *testing.T) {
	joined := time.Unix(1_800_000_000, 0)
	read := func(ifc wg.Interface) wg.Status {
		st := wg.Status{Plane: string(ifc.Plane), Interface: ifc.Name, Up: ifc.Name != "wg-obs", Peers: []wg.PeerStatus{}}
		for _, p := range ifc.Peers {
			st.Peers = append(st.Peers, wg.PeerStatus{Name: p.Name, PublicKey: p.PublicKey, LatestHandshake: joined.Add(-5 * time.Second), RxBytes: 180, TxBytes: 92})
		}
		return st
	}
	e := newNodeEnv(t, func(cfg *NodeAPIConfig) {
		cfg.Planes, cfg.ReadPlane = fixedPlanes{ifcs: planeIfcs("master"), joined: joined}, read
	})
	url := serveMetrics(t, e)
	code, body, err := scrape(t, e, url, clientCert(t, e.ca, "prometheus", pki.RoleReader))
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", code, err, body)
	}
	for _, want := range []string{
		"kubedos_planes_joined_timestamp_seconds 1800000000",
		"kubedos_planes_join_ok 1",
		`kubedos_plane_up{plane="control",interface="wg-control"} 1`,
		`kubedos_plane_up{plane="observability",interface="wg-obs"} 0`,
		`kubedos_plane_peer_last_handshake_timestamp_seconds{plane="kubernetes",peer="master"} 1799999995`,
		`kubedos_plane_peer_receive_bytes_total{plane="control",peer="master"} 180`,
		`kubedos_plane_peer_transmit_bytes_total{plane="control",peer="master"} 92`,
		"# TYPE kubedos_plane_peer_receive_bytes_total counter",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	// A node on no plane has no plane metrics.
	bare := newNodeEnv(t)
	_, body, err = scrape(t, bare, serveMetrics(t, bare), clientCert(t, bare.ca, "prometheus", pki.RoleReader))
	if err != nil || strings.Contains(body, "kubedos_plane") {
		t.Errorf("a node without planes: %v\n%s", err, body)
	}
}

// checkMetricsText hands the text to promtool, an independent parser and
// linter of the exposition format, when it is installed (CI has it).
func checkMetricsText(t *testing.T, text string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed (Debian package prometheus): exposition format not checked by it")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
