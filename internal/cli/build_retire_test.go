package cli

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// retireHub is the hub's admin service as far as `build retire` and `node
// list` need it.
type retireHub struct {
	api.AdminServer
	retired map[string]string
}

func (h *retireHub) RetireBuild(_ context.Context, r *api.RetireBuildRequest) (*api.RetiredBuild, error) {
	h.retired[r.BuildID] = r.Reason
	return &api.RetiredBuild{BuildID: r.BuildID, Reason: r.Reason, At: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), By: "admin (admin)"}, nil
}

func (h *retireHub) ListNodes(context.Context, *api.ListNodesRequest) (*api.ListNodesResponse, error) {
	n := api.Node{Name: "w-1", Role: "worker", State: "enrolled", BuildID: "img-a"}
	if r, ok := h.retired["img-a"]; ok {
		n.Retired = "build img-a was retired: " + r
	}
	return &api.ListNodesResponse{Nodes: []api.Node{n}}, nil
}

// serveRetireHub serves h (any admin fake) with a hub certificate (the hub's policy) and
// writes a key directory with the CA and an admin certificate.
func serveRetireHub(t *testing.T, h api.AdminServer) (keys, addr string) {
	t.Helper()
	ca := pkitest.NewCA(t)
	keys = pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	srv, err := ca.IssueServer([]string{api.HubServerName}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := srv.TLSCertificate()
	s := grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewServerTLSFromCert(&pair)))...)
	api.RegisterAdmin(s, h)
	if ss, ok := h.(api.SnapshotsServer); ok {
		api.RegisterSnapshots(s, ss)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return keys, lis.Addr().String()
}

func TestBuildRetire(t *testing.T) {
	h := &retireHub{retired: map[string]string{}}
	keys, addr := serveRetireHub(t, h)
	flags := []string{"--hub", addr, "--keys", keys}
	if code, _, errs := run(t, append([]string{"build", "retire", "img-a"}, flags...)...); code == 0 || !strings.Contains(errs, "reason") {
		t.Errorf("retire without --reason: exit %d, %s", code, errs)
	}
	code, out, errs := run(t, append([]string{"build", "retire", "img-a", "--reason", "CVE-2026-0001"}, flags...)...)
	if code != 0 || !strings.Contains(out, "build img-a retired by admin (admin)") || h.retired["img-a"] != "CVE-2026-0001" {
		t.Fatalf("retire: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, append([]string{"build", "retire", "img-b", "--reason", "r", "-o", "json"}, flags...)...)
	var rb api.RetiredBuild
	if code != 0 || json.Unmarshal([]byte(out), &rb) != nil || rb.BuildID != "img-b" {
		t.Errorf("retire -o json: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, append([]string{"node", "list"}, flags...)...)
	if code != 0 || !strings.Contains(out, "retired") || !strings.Contains(out, "CVE-2026-0001") {
		t.Errorf("node list with w-1 on a retired build: exit %d\n%s%s", code, out, errs)
	}
}
