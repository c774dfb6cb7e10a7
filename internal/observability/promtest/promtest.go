// Package promtest runs Debian's prometheus on loopback for tests: the
// independent check that a configuration this repository generates really
// scrapes what kubedosd and the hub serve, TLS and all.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/pki"
)

// Server is a running prometheus.
type Server struct {
	URL string
}

// WriteFiles writes files under dir and the TLS files Prometheus presents:
// the CA's certificate and a fresh reader certificate it issues.
func WriteFiles(t testing.TB, dir string, files observability.Files, ca *pki.CA) {
	t.Helper()
	reader, err := ca.IssueClient("prometheus", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	all := observability.Files{observability.FileCA: ca.CertPEM(), observability.FileReaderCert: reader.CertPEM, observability.FileReaderKey: reader.KeyPEM}
	for k, v := range files {
		all[k] = v
	}
	for name, b := range all {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Start runs prometheus with dir's prometheus.yml until the test ends; it
// skips the test when prometheus is not installed.
func Start(t testing.TB, dir string) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus; scripts/setup.sh installs it)")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, observability.FileConfig),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	return &Server{URL: "http://" + addr}
}

// Query runs an instant query and returns its first sample's value ("" for
// an empty result).
func (s *Server) Query(q string) (string, error) {
	res, err := http.Get(s.URL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", err
	}
	if body.Status != "success" {
		return "", fmt.Errorf("query %s: %s", q, body.Error)
	}
	if len(body.Data.Result) == 0 {
		return "", nil
	}
	v, _ := body.Data.Result[0].Value[1].(string)
	return v, nil
}

// WaitFor polls q until it returns want, failing the test after timeout.
func (s *Server) WaitFor(t testing.TB, q, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = s.Query(q); err == nil && got == want {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s = %q (%v) after %s, want %q; scrape errors: %s", q, got, err, timeout, want, s.scrapeErrors())
}

// scrapeErrors lists the targets' last scrape errors, for a failure message.
func (s *Server) scrapeErrors() string {
	res, err := http.Get(s.URL + "/api/v1/targets")
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	var body struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return err.Error()
	}
	out := ""
	for _, tg := range body.Data.ActiveTargets {
		if tg.LastError != "" {
			out += fmt.Sprintf("\n  %s: %s", tg.ScrapeURL, tg.LastError)
		}
	}
	return out
}
