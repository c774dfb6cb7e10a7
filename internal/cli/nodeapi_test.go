package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/api/apitest"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
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

func (f *fakeNode) Health(_ context.Context, r *api.HealthRequest) (*api.Health, error) {
	h := &api.Health{Healthy: false, SystemState: "degraded", FailedUnits: []string{"chrony.service"},
		Checks: []api.HealthCheck{{Name: "systemd", Critical: true, Detail: "systemd is degraded"}}}
	if r.Pods {
		h.Pods = []api.PodReadiness{{Name: "kube-system/coredns-1", Ready: true}, {Name: "kubedos-probe/probe-1"}}
	}
	return h, nil
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
	node = &fakeNode{}
	env := apitest.NewNode(t, "w-1", "worker", node)
	return env.Keys, env.Serve(t), node
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
	if code, out, _ = runNodeAPI(t, "", append([]string{"health"}, flags...)...); code != 1 || !strings.Contains(out, "UNHEALTHY (systemd: degraded)") ||
		strings.Contains(out, "POD") {
		t.Errorf("unhealthy node: exit %d, %s", code, out)
	}
	if code, out, _ = runNodeAPI(t, "", append([]string{"health", "--pods"}, flags...)...); code != 1 ||
		!regexp.MustCompile(`kubedos-probe/probe-1\s+false`).MatchString(out) || !regexp.MustCompile(`kube-system/coredns-1\s+true`).MatchString(out) {
		t.Errorf("health --pods: exit %d, %s", code, out)
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
