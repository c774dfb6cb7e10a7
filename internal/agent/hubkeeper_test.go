package agent

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recordingKeeper stands in for internal/hubhost's Keeper, which has tests
// of its own: here only the node API's part is under test.
type recordingKeeper struct {
	mu    sync.Mutex
	calls []string
}

func (k *recordingKeeper) TakeOver(_ context.Context, self, role, actor string, req *api.HubHandoff) (*api.HubHandoffResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, self+"/"+role+"/"+actor+"/"+string(req.Spec))
	return &api.HubHandoffResult{Node: self, Listen: ":7443", Sealed: true}, nil
}

func TestTakeOverHub(t *testing.T) {
	ctx := context.Background()
	h := &api.HubHandoff{Spec: []byte("spec")}

	none := newNodeEnv(t)
	_, err := none.as("ops", pki.RoleAdmin).TakeOverHub(ctx, h)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "does not keep a hub") {
		t.Errorf("node without a keeper: %v", err)
	}

	k := &recordingKeeper{}
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.Hub = k })
	for _, role := range []pki.Role{pki.RoleReader, pki.RoleOperator} {
		if _, err := e.as("someone", role).TakeOverHub(ctx, h); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", role, err)
		}
	}
	if _, err := e.client(nil).TakeOverHub(ctx, h); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want Unauthenticated", err)
	}
	res, err := e.as("ops", pki.RoleAdmin).TakeOverHub(ctx, h)
	if err != nil || res.Node != "w-1" || !res.Sealed {
		t.Fatalf("admin: %+v, %v", res, err)
	}
	if len(k.calls) != 1 || !strings.HasPrefix(k.calls[0], "w-1/worker/ops") || !strings.HasSuffix(k.calls[0], "/spec") {
		t.Errorf("keeper calls %q", k.calls)
	}
	var audited bool
	for _, r := range e.auditLog() {
		if r.Method == "TakeOverHub" && r.Outcome == "ok" && strings.HasPrefix(r.Actor, "ops") {
			audited = true
		}
	}
	if !audited {
		t.Error("the takeover is not in the node's audit")
	}
}

func TestHubAddrFileWins(t *testing.T) {
	file := t.TempDir() + "/hub.addr"
	cfg := EnrollConfig{Hub: "10.20.0.1:7443", HubFile: file}
	if got := cfg.HubAddr(); got != "10.20.0.1:7443" {
		t.Errorf("without the file: %q", got)
	}
	if err := writeFileForTest(file, "127.0.0.1:7443\n"); err != nil {
		t.Fatal(err)
	}
	if got := cfg.HubAddr(); got != "127.0.0.1:7443" {
		t.Errorf("with the file: %q", got)
	}
	if err := writeFileForTest(file, "  \n"); err != nil {
		t.Fatal(err)
	}
	if got := cfg.HubAddr(); got != "10.20.0.1:7443" {
		t.Errorf("with an empty file: %q", got)
	}
}

func writeFileForTest(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
