package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

// sampleOf returns the value of the sample line starting with series, or
// "" when there is none.
func sampleOf(text, series string) string {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

func TestHubMetrics(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w1, w2 := newNode(t, "w-1", "worker"), newNode(t, "w-2", "worker")
	e.register(w1)
	e.register(w2)
	e.mustEnroll(w1)
	w2.pcrs[11] = digest("another cmdline")
	if _, err := enroll(ctx, t, e.hub, w2, steps{}); err == nil {
		t.Fatal("w-2 enrolled with a foreign PCR 11")
	}
	if _, err := e.hub.BeginEnrollment(ctx, BeginRequest{Name: "Bad Name", Role: "worker"}); err == nil {
		t.Fatal("a malformed name began enrollment")
	}
	var b bytes.Buffer
	if err := e.hub.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, tt := range []struct{ series, want string }{
		{`kubedos_hub_node_state{node="w-1",role="worker",state="enrolled"}`, "1"},
		{`kubedos_hub_node_state{node="w-2",role="worker",state="quarantined"}`, "1"},
		{`kubedos_hub_nodes{state="enrolled"}`, "1"},
		{`kubedos_hub_nodes{state="quarantined"}`, "1"},
		{`kubedos_hub_nodes{state="revoked"}`, "0"},
		{`kubedos_hub_enrollments_total{kind="enroll",outcome="enrolled"}`, "1"},
		{`kubedos_hub_enrollments_total{kind="enroll",outcome="quarantined"}`, "1"},
		{`kubedos_hub_refusals_total{check="pcr-policy"}`, "1"},
		{`kubedos_hub_refusals_total{check="request"}`, "1"},
		{`kubedos_hub_certificates_issued_total{kind="node"}`, "1"},
		{`kubedos_hub_evidence_verification_seconds_count`, "2"},
		{`kubedos_hub_evidence_verification_seconds_bucket{le="+Inf"}`, "2"},
		{`kubedos_hub_refused_total{reason="anonymous"}`, "1"},
		{`kubedos_hub_enrollment_window_open`, "0"},
		{`kubedos_hub_node_certificate_expiry_timestamp_seconds{node="w-1"}`, func() string {
			n, _ := e.store.Node("w-1")
			return strconv.FormatInt(n.CertNotAfter.Unix(), 10)
		}()},
	} {
		if got := sampleOf(text, tt.series); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.series, got, tt.want)
		}
	}
	head, err := e.store.VerifyAuditChain()
	if err != nil {
		t.Fatal(err)
	}
	if got := sampleOf(text, "kubedos_hub_audit_entries"); got != strconv.FormatInt(int64(head.Seq), 10) {
		t.Errorf("audit entries %s, want the chain's length %d", got, head.Seq)
	}
	if strings.Contains(text, "kubedos_hub_convergence_last_run") {
		t.Error("a convergence run is reported before any was recorded")
	}

	// A revoke and a failed convergence run show at the next scrape.
	if err := e.hub.Revoke(ctx, admin, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.RecordRun(ctx, operator, api.RunRecord{Cluster: "c", Outcome: "failed", Ended: t0, Counts: api.RunCounts{Failed: 2}}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := e.hub.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	text = b.String()
	for _, tt := range []struct{ series, want string }{
		{`kubedos_hub_node_state{node="w-1",role="worker",state="revoked"}`, "1"},
		{`kubedos_hub_nodes{state="revoked"}`, "1"},
		{`kubedos_hub_revoked_certificates`, "1"},
		{`kubedos_hub_convergence_last_run{outcome="failed"}`, "1"},
		{`kubedos_hub_convergence_last_run{outcome="converged"}`, "0"},
		{`kubedos_hub_convergence_last_run_steps{outcome="failed"}`, "2"},
		{`kubedos_hub_convergence_last_run_timestamp_seconds`, strconv.FormatInt(t0.Unix(), 10)},
	} {
		if got := sampleOf(text, tt.series); got != tt.want {
			t.Errorf("after revoke and run: %s = %q, want %q", tt.series, got, tt.want)
		}
	}
	checkMetricsText(t, text)
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

func TestVerifyHistogramBuckets(t *testing.T) {
	var m metrics
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 30 * time.Millisecond, 10 * time.Second} {
		m.verified(d)
	}
	var b strings.Builder
	m.write(&b, func(string, string, string) {})
	text := b.String()
	for _, tt := range []struct{ le, want string }{{"0.001", "2"}, {"0.025", "2"}, {"0.05", "3"}, {"2.5", "3"}, {"+Inf", "4"}} {
		if got := sampleOf(text, `kubedos_hub_evidence_verification_seconds_bucket{le="`+tt.le+`"}`); got != tt.want {
			t.Errorf("bucket le=%s: %s, want %s (cumulative)", tt.le, got, tt.want)
		}
	}
}

// The hub's /metrics is served over TLS to cluster certificates that may
// read and are not revoked; no anonymous caller reaches it.
func TestHubMetricsOverHTTPS(t *testing.T) {
	e := newEnv(t)
	e.clock = &clock{t: time.Now()}
	e.newHub()
	addr := serveHubMetrics(t, e.hub, e.ca)
	get := func(cert *tls.Certificate) (int, string, error) {
		// As Prometheus checks: the CA and the name (the metrics
		// certificate has no hub policy, so HubClientTLS would refuse it).
		conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: api.HubServerName, MinVersion: tls.VersionTLS13}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
		defer cl.CloseIdleConnections()
		res, err := cl.Get("https://" + addr + "/metrics")
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		return res.StatusCode, string(body), err
	}
	rita := clientCert(t, e, "prometheus", pki.RoleReader)
	code, body, err := get(rita)
	if err != nil || code != http.StatusOK || !strings.Contains(body, `kubedos_hub_nodes{state="enrolled"} 0`) {
		t.Fatalf("reader: %d %v\n%s", code, err, body)
	}
	if _, _, err := get(nil); err == nil {
		t.Error("a caller without a certificate was answered")
	}
	if _, err := e.hub.RevokeClient(context.Background(), admin, rita.Certificate[0], "test"); err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(rita); err != nil || code != http.StatusUnauthorized {
		t.Errorf("revoked reader: %d %v, want 401", code, err)
	}
}

// BenchmarkHubWriteMetrics: one scrape of the hub's /metrics with the
// reference topology's 16 nodes enrolled (docs/benchmarks.md).
func BenchmarkHubWriteMetrics(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			e := newEnv(b)
			for i := range n {
				name := fmt.Sprintf("n-%d", i)
				e.policy[name] = "worker"
				nd := newNode(b, name, "worker")
				e.register(nd)
				e.mustEnroll(nd)
			}
			var buf bytes.Buffer
			if err := e.hub.WriteMetrics(&buf); err != nil {
				b.Fatal(err)
			}
			size := buf.Len()
			b.ResetTimer()
			for range b.N {
				buf.Reset()
				if err := e.hub.WriteMetrics(&buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
