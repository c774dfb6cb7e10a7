package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/api/apitest"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/spec"
)

// snapshotHub keeps one etcd snapshot and streams it.
type snapshotHub struct {
	api.AdminServer
	snap api.EtcdSnapshot
	body []byte
}

func (h *snapshotHub) EtcdSnapshots(context.Context, *api.EtcdSnapshotsRequest) (*api.EtcdSnapshots, error) {
	return &api.EtcdSnapshots{Kept: true, Snapshots: []api.EtcdSnapshot{h.snap}}, nil
}

func (h *snapshotHub) Download(r *api.EtcdSnapshotRequest, out api.SnapshotSender) error {
	if r.Name != h.snap.Name {
		return status.Error(codes.NotFound, "no such snapshot")
	}
	if err := out.Send(&api.EtcdSnapshotChunk{Snapshot: &h.snap}); err != nil {
		return err
	}
	return out.Send(&api.EtcdSnapshotChunk{Data: h.body})
}

// restoreNode is an etcd node's API during a restore: it records what it
// received, fails when told to, and reports its member healthy once
// restored (healthy set) or never (sick).
type restoreNode struct {
	api.NodeServer
	name      string
	mu        sync.Mutex
	begins    []api.EtcdRestoreBegin
	sums      []string
	restarted []string
	fail      error
	sick      bool
}

func (n *restoreNode) Version(context.Context, *api.NodeVersionRequest) (*api.NodeVersion, error) {
	return &api.NodeVersion{Node: n.name}, nil
}

func (n *restoreNode) Health(context.Context, *api.HealthRequest) (*api.Health, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ok := len(n.begins) > 0 && !n.sick
	return &api.Health{Checks: []api.HealthCheck{{Name: "etcd", OK: ok, Detail: "member " + n.name}}}, nil
}

func (n *restoreNode) EtcdRestore(st api.EtcdRestoreStream) (*api.EtcdRestoreResult, error) {
	first, err := st.Recv()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		h.Write(c.Data)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	n.begins = append(n.begins, *first.Begin)
	n.sums = append(n.sums, hex.EncodeToString(h.Sum(nil)))
	return &api.EtcdRestoreResult{Node: n.name, Snapshot: first.Begin.Snapshot, Steps: []string{"restored"}}, nil
}

func (n *restoreNode) RestartService(_ context.Context, r *api.RestartServiceRequest) (*api.Unit, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restarted = append(n.restarted, r.Name)
	return &api.Unit{Name: r.Name}, nil
}

func (n *restoreNode) got() ([]api.EtcdRestoreBegin, []string, []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.begins), slices.Clone(n.sums), slices.Clone(n.restarted)
}

// restoreEnv serves a hub keeping one snapshot and the nodes named, over
// mTLS with one CA, and dials them as an admin.
func restoreEnv(t *testing.T, names ...string) (EtcdRestoreTarget, *snapshotHub, map[string]*restoreNode) {
	t.Helper()
	ca := pkitest.NewCA(t)
	keys := pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	body := []byte("bbolt bytes of a snapshot")
	d := sha256.Sum256(body)
	hub := &snapshotHub{body: body, snap: api.EtcdSnapshot{Name: "etcd-20261207T210000Z-cp-1.db", Member: "cp-1",
		Taken: time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC), Bytes: int64(len(body)), SHA256: hex.EncodeToString(d[:])}}
	srv, err := ca.IssueServer([]string{api.HubServerName}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := srv.TLSCertificate()
	s := grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewServerTLSFromCert(&pair)))...)
	api.RegisterAdmin(s, hub)
	api.RegisterSnapshots(s, hub)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	access := Access{Keys: keys}
	admin, done, err := access.Hub(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	nodes := map[string]*restoreNode{}
	addrs := map[string]string{}
	for _, n := range names {
		nodes[n] = &restoreNode{name: n}
		addrs[n] = apitest.Serve(t, apitest.NodeServerOf(t, ca, n, "controlplane", nodes[n]))
	}
	return EtcdRestoreTarget{Hub: admin, Dial: func(name string) (*api.NodeClient, func(), error) {
		a, ok := addrs[name]
		if !ok {
			return nil, nil, errors.New("no API address")
		}
		return access.Node(a, name)
	}}, hub, nodes
}

// Every member gets the hub's snapshot, byte for byte, with one token;
// the API servers without a member are restarted once all are healthy;
// the copy off the master is not left behind.
func TestRestoreEtcd(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	tg, hub, nodes := restoreEnv(t, "etcd-1", "etcd-2", "etcd-3", "cp-1")
	tg.Members, tg.APIServers = []string{"etcd-1", "etcd-2", "etcd-3"}, []string{"cp-1"}
	now := time.Date(2026, 12, 7, 22, 30, 0, 0, time.UTC)
	r, err := RestoreEtcd(context.Background(), tg, EtcdRestoreOptions{Wait: 10 * time.Second, Every: 50 * time.Millisecond, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	wantToken := "restore-20261207t223000z-" + hub.snap.SHA256[:12]
	if r.Token != wantToken || len(r.Members) != 3 || !slices.Equal(r.Restarted, []string{"cp-1"}) || r.Snapshot.Name != hub.snap.Name {
		t.Errorf("report %+v", r)
	}
	for _, m := range tg.Members {
		begins, sums, _ := nodes[m].got()
		if len(begins) != 1 || begins[0].Token != wantToken || begins[0].SHA256 != hub.snap.SHA256 || sums[0] != hub.snap.SHA256 || begins[0].Bytes != hub.snap.Bytes {
			t.Errorf("%s received %+v, bytes with sha256 %v", m, begins, sums)
		}
	}
	if _, _, restarted := nodes["cp-1"].got(); !slices.Equal(restarted, []string{"kube-apiserver.service"}) {
		t.Errorf("cp-1 restarted %v", restarted)
	}
	if left, _ := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "kubedos-etcd-restore-*")); len(left) > 0 {
		t.Errorf("the snapshot's copy was left: %v", left)
	}
}

// A member that cannot be reached stops the restore before any member is
// touched; one that fails stops it naming those restored before; members
// not healthy in time fail it; none of them restarts an API server.
func TestRestoreEtcdStops(t *testing.T) {
	opts := EtcdRestoreOptions{Wait: 3 * time.Second, Every: 100 * time.Millisecond}
	t.Run("unreachable", func(t *testing.T) {
		tg, _, nodes := restoreEnv(t, "etcd-1", "etcd-2")
		tg.Members = []string{"etcd-1", "etcd-2", "etcd-3"}
		_, err := RestoreEtcd(context.Background(), tg, opts)
		if err == nil || !strings.Contains(err.Error(), "etcd member etcd-3") || !strings.Contains(err.Error(), "nothing was restored") {
			t.Fatalf("error %v", err)
		}
		for n, node := range nodes {
			if b, _, _ := node.got(); len(b) > 0 {
				t.Errorf("%s was restored", n)
			}
		}
	})
	t.Run("not a snapshot's name", func(t *testing.T) {
		tg, _, nodes := restoreEnv(t, "etcd-1")
		tg.Members = []string{"etcd-1"}
		_, err := RestoreEtcd(context.Background(), tg, EtcdRestoreOptions{Snapshot: "../../hub.db"})
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("error %v, want ErrInvalid", err)
		}
		if b, _, _ := nodes["etcd-1"].got(); len(b) > 0 {
			t.Error("etcd-1 was restored")
		}
	})
	t.Run("a member fails", func(t *testing.T) {
		tg, _, nodes := restoreEnv(t, "etcd-1", "etcd-2", "etcd-3", "cp-1")
		tg.Members, tg.APIServers = []string{"etcd-1", "etcd-2", "etcd-3"}, []string{"cp-1"}
		nodes["etcd-2"].fail = status.Error(codes.FailedPrecondition, "etcdutl snapshot restore: no space left")
		r, err := RestoreEtcd(context.Background(), tg, opts)
		if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "restored before it: etcd-1;") {
			t.Fatalf("error %v", err)
		}
		if b, _, _ := nodes["etcd-3"].got(); len(b) > 0 || len(r.Members) != 1 {
			t.Errorf("the restore went on past the failed member: %+v", r)
		}
		if _, _, restarted := nodes["cp-1"].got(); len(restarted) > 0 {
			t.Errorf("an API server was restarted: %v", restarted)
		}
	})
	t.Run("not healthy", func(t *testing.T) {
		tg, _, nodes := restoreEnv(t, "etcd-1", "etcd-2", "cp-1")
		tg.Members, tg.APIServers = []string{"etcd-1", "etcd-2"}, []string{"cp-1"}
		nodes["etcd-2"].sick = true
		_, err := RestoreEtcd(context.Background(), tg, opts)
		if err == nil || !strings.Contains(err.Error(), "not every member healthy") || !strings.Contains(err.Error(), "etcd-2") {
			t.Fatalf("error %v", err)
		}
		if _, _, restarted := nodes["cp-1"].got(); len(restarted) > 0 {
			t.Errorf("an API server was restarted: %v", restarted)
		}
	})
}

// The reference restores its three etcd nodes and restarts the three
// control planes' API servers; local-ha's control planes are the members.
func TestEtcdRestoreTargets(t *testing.T) {
	for _, tt := range []struct {
		example         []byte
		members, others []string
	}{
		{examples.Reference, []string{"etcd-1", "etcd-2", "etcd-3"}, []string{"cp-1", "cp-2", "cp-3"}},
		{examples.LocalHA, []string{"cp-1", "cp-2", "cp-3"}, nil},
	} {
		doc, err := spec.Parse(tt.example)
		if err != nil {
			t.Fatal(err)
		}
		m, o, err := EtcdRestoreTargets(spec.WithDefaults(doc.Spec))
		if err != nil || !slices.Equal(m, tt.members) || !slices.Equal(o, tt.others) {
			t.Errorf("members %v, API servers %v (%v); want %v, %v", m, o, err, tt.members, tt.others)
		}
	}
}
