package cluster

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hubhost"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
)

// testKeys runs the key ceremony once per test into a temporary directory.
func testKeys(t *testing.T) *sign.KeySet {
	t.Helper()
	ks, err := sign.InitKeys(context.Background(), filepath.Join(t.TempDir(), "keys"), sign.InitOptions{Cluster: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// localSpec is examples/local.yaml with a manifest naming its roles.
func localSpec(t *testing.T) (*spec.ClusterSpec, *manifest.Manifest) {
	t.Helper()
	return specWithManifest(t, examples.Local)
}

// specWithManifest is the spec in doc with a manifest naming its roles.
func specWithManifest(t *testing.T, doc []byte) (*spec.ClusterSpec, *manifest.Manifest) {
	t.Helper()
	s, err := spec.LoadBytes(doc)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{BuildID: "b1", Cluster: s.Metadata.Name, Roles: map[string]manifest.RoleManifest{}}
	for _, n := range s.Topology.Nodes {
		m.Roles[string(n.Role)] = manifest.RoleManifest{RoleID: "id-" + string(n.Role)}
	}
	return s, m
}

// inProcessHub runs hubs as goroutines of the test: what a second front
// end without a kubedos binary could do while it lives.
type inProcessHub struct {
	t    *testing.T
	spec *spec.ClusterSpec
	m    *manifest.Manifest
	ks   *sign.KeySet
	mu   sync.Mutex
	runs map[string]func() // state dir → stop
}

func (h *inProcessHub) Start(ctx context.Context, hs HubSpec) error {
	ca, err := pki.LoadCA(hs.KeysDir)
	if err != nil {
		return err
	}
	hb, err := hubhost.Open(ctx, hubhost.Config{Spec: h.spec, Manifest: h.m, CA: ca, ArtifactKey: h.ks.SigningPub,
		StatePath: filepath.Join(hs.StateDir, "hub.db")})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", hs.Listen)
	if err != nil {
		hb.Close()
		return err
	}
	serveCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hb.Serve(serveCtx, lis)
	}()
	h.mu.Lock()
	h.runs[hs.StateDir] = func() { cancel(); <-done }
	h.mu.Unlock()
	h.t.Cleanup(func() { _ = h.Stop(hs.StateDir) })
	return nil
}

func (h *inProcessHub) Alive(dir string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs[dir] != nil
}

func (h *inProcessHub) Stop(dir string) error {
	h.mu.Lock()
	stop := h.runs[dir]
	delete(h.runs, dir)
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// versionNode answers the node API's Version as node w-1.
type versionNode struct{ api.NodeServer }

func (versionNode) Version(context.Context, *api.NodeVersionRequest) (*api.NodeVersion, error) {
	return &api.NodeVersion{Node: "w-1", BuildID: "b1"}, nil
}
