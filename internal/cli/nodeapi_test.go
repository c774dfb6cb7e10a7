package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// fakeNode answers the node API the way kubedosd would, recording requests.
type fakeNode struct {
	api.NodeServer
	mu     sync.Mutex
	reqs   []any
	planes *api.Planes // nil: a healthy worker's
}

func (f *fakeNode) seen(r any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
}

func (f *fakeNode) Version(context.Context, *api.NodeVersionRequest) (*api.NodeVersion, error) {
	return &api.NodeVersion{Node: "w-1", BuildID: "b-0011", Slot: "a", Kubedosd: "dev"}, nil
}

func (f *fakeNode) Health(context.Context, *api.HealthRequest) (*api.Health, error) {
	return &api.Health{Healthy: false, SystemState: "degraded", FailedUnits: []string{"chrony.service"},
		Checks: []api.HealthCheck{{Name: "systemd", Critical: true, Detail: "systemd is degraded"}}}, nil
}

func (f *fakeNode) Logs(_ context.Context, r *api.LogsRequest) (*api.Logs, error) {
	f.seen(r)
	return &api.Logs{Lines: r.Lines, Entries: []api.LogEntry{{Time: time.Unix(0, 0).UTC(), Identifier: "chronyd", PID: 7, Message: "synced"}}}, nil
}

func (f *fakeNode) ConfigApply(_ context.Context, r *api.ConfigApplyRequest) (*api.ConfigApplied, error) {
	f.seen(r)
	if strings.Contains(r.Document, "hostnme") {
		return nil, status.Error(codes.InvalidArgument, "config:1:2: hostnme: unknown field")
	}
	return &api.ConfigApplied{DryRun: r.DryRun, Changed: true, Diff: "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n"}, nil
}

func (f *fakeNode) Reboot(context.Context, *api.PowerRequest) (*api.Power, error) {
	return nil, status.Error(codes.PermissionDenied, "rita (reader) may not call Reboot (node.power) on node w-1")
}

// nodeCLIEnv serves fakeNode over mTLS for node w-1 and writes a key
// directory the CLI reads: the CA certificate and an admin certificate.
func nodeCLIEnv(t *testing.T) (keys, addr string, node *fakeNode) {
	t.Helper()
	keys, s, node := fakeNodeServer(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	return keys, lis.Addr().String(), node
}

// fakeNodeServer is nodeCLIEnv without the listener, for tests that choose
// when the node starts answering.
func fakeNodeServer(t *testing.T) (keys string, s *grpc.Server, node *fakeNode) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(der)
	ca, err := pki.NewCA(caCert, key)
	if err != nil {
		t.Fatal(err)
	}
	keys = t.TempDir()
	admin, err := ca.IssueClient("admin", pki.RoleAdmin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for f, data := range map[string][]byte{sign.FileCACert: ca.CertPEM(), sign.FileAdminCert: admin.CertPEM, sign.FileAdminKey: admin.KeyPEM} {
		if err := os.MkdirAll(filepath.Join(keys, filepath.Dir(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, nodeKey)
	nodeCert, err := ca.SignNodeCSR(csr, "w-1", "worker", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair := tls.Certificate{Certificate: [][]byte{nodeCert.Raw}, PrivateKey: nodeKey, Leaf: nodeCert}
	node = &fakeNode{}
	s = grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})))...)
	api.RegisterNode(s, node)
	t.Cleanup(s.Stop)
	return keys, s, node
}

// runNodeAPI runs `kubedos node <args>` with only the node API commands.
func runNodeAPI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb}
	root := &cobra.Command{Use: "kubedos", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVarP(&g.output, "output", "o", OutputText, "")
	node := &cobra.Command{Use: "node"}
	node.AddCommand(nodeAPICommands(g)...)
	root.AddCommand(node)
	root.SetArgs(append([]string{"node"}, args...))
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	var ee exitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.code, out.String(), errb.String()
	default:
		return 1, out.String(), errb.String() + err.Error() + remoteCode(err) // as Run prints it
	}
}

func TestNodeAPICommands(t *testing.T) {
	keys, addr, node := nodeCLIEnv(t)
	flags := []string{"--node", addr, "--name", "w-1", "--keys", keys}

	code, out, errs := runNodeAPI(t, "", append([]string{"version"}, flags...)...)
	if code != 0 || !strings.Contains(out, "build:     b-0011") {
		t.Errorf("version: %d %s %s", code, out, errs)
	}
	code, out, _ = runNodeAPI(t, "", append([]string{"version", "-o", "json"}, flags...)...)
	var v api.NodeVersion
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Slot != "a" {
		t.Errorf("version -o json: %d %s", code, out)
	}
	if code, out, _ = runNodeAPI(t, "", append([]string{"health"}, flags...)...); code != 1 || !strings.Contains(out, "UNHEALTHY (systemd: degraded)") {
		t.Errorf("unhealthy node: exit %d, %s", code, out)
	}
	code, out, errs = runNodeAPI(t, "", append([]string{"logs", "-u", "chrony", "-n", "7", "--since", "10m"}, flags...)...)
	if code != 0 || !strings.Contains(out, "1970-01-01T00:00:00Z chronyd[7]: synced") {
		t.Errorf("logs: %d %s %s", code, out, errs)
	}
	node.mu.Lock()
	lr := node.reqs[0].(*api.LogsRequest)
	node.mu.Unlock()
	if lr.Unit != "chrony" || lr.Lines != 7 || time.Since(lr.Since) < 9*time.Minute || time.Since(lr.Since) > 11*time.Minute {
		t.Errorf("logs request %+v", lr)
	}
	code, out, _ = runNodeAPI(t, `{"kind":"NodeConfig"}`, append([]string{"config", "apply", "-", "--dry-run"}, flags...)...)
	if code != 0 || !strings.Contains(out, "+y\n") || !strings.Contains(out, "dry run: nothing changed") {
		t.Errorf("config apply --dry-run: %d %s", code, out)
	}
	file := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(file, []byte(`{"hostnme":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs = runNodeAPI(t, "", append([]string{"config", "apply", file}, flags...)...); code != 1 || !strings.Contains(errs, "hostnme: unknown field") {
		t.Errorf("config apply of a bad document: %d %s", code, errs)
	}
	if code, _, errs = runNodeAPI(t, "", append([]string{"reboot"}, flags...)...); code != 1 || !strings.Contains(errs, "PermissionDenied") {
		t.Errorf("refused reboot: %d %s", code, errs)
	}
	// The node's certificate must name the node.
	if code, _, errs = runNodeAPI(t, "", "version", "--node", addr, "--name", "w-2", "--keys", keys); code != 1 || !strings.Contains(errs, "w-2") {
		t.Errorf("wrong node name accepted: %d %s", code, errs)
	}
	if code, _, errs = runNodeAPI(t, "", "version", "--node", addr, "--keys", keys); code != 1 || !strings.Contains(errs, "--name") {
		t.Errorf("an IP address without --name: %d %s", code, errs)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"10m":                  now.Add(-10 * time.Minute),
		"2026-05-01T00:00:00Z": time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "0s"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}
