package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
)

// Deploying to Proxmox VE (its stand-in): every VM made and started, its
// new TPM's EK registered with the hub, the identity carrying the LAN
// gateway; a second deploy changes nothing.
func TestUpProxmox(t *testing.T) {
	s, m := localSpec(t)
	fx := newProxmoxFixture(t, s, m)
	cfg, pve, hubAddr := fx.cfg, fx.pve, fx.hubAddr
	if _, err := New(cfg).Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := New(cfg)
	c.hubAddr = hubAddr
	admin, done, err := c.admin()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	nodes, err := admin.ListNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]string{}
	for _, n := range nodes.Nodes {
		registered[n.Name] = n.EKHash
	}
	for _, sn := range s.Topology.Nodes {
		vm, ok := pve.VM(sn.VMID)
		if !ok || !vm.Running {
			t.Errorf("%s: VM %d %+v", sn.Name, sn.VMID, vm)
		}
		if len(registered[sn.Name]) != 64 {
			t.Errorf("%s: EK %q at the hub", sn.Name, registered[sn.Name])
		}
		if sku := skuOf(t, vm.Config["smbios1"]); !strings.Contains(sku, "kubedos.name="+sn.Name+";kubedos.hub="+hubAddr) ||
			!strings.HasSuffix(sku, ";kubedos.gateway="+s.Networking.LAN.Gateway) {
			t.Errorf("%s: SKU %q", sn.Name, sku)
		}
	}
	again := New(cfg)
	if _, err := again.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, e := range again.Deployed() {
		if e.Action != target.ActionUnchanged {
			t.Errorf("second deploy: %+v", e)
		}
	}
	if len(again.Deployed()) != len(s.Topology.Nodes) {
		t.Errorf("second deploy reported %d nodes", len(again.Deployed()))
	}
}

// proxmoxFixture is a cluster of spec s deployed to the Proxmox VE
// stand-in, its VMs' EKs registered with a hub running in the test from
// the cluster's own hub directory (where a local hub would be).
type proxmoxFixture struct {
	cfg     Config
	pve     *proxmoxtest.Fake
	hubs    *inProcessHub
	hubAddr string
	// opHub is the operator's hub's state directory.
	opHub string
}

func newProxmoxFixture(t *testing.T, s *spec.ClusterSpec, m *manifest.Manifest) *proxmoxFixture {
	t.Helper()
	ks := testKeys(t)
	dir := t.TempDir()
	hubs := &inProcessHub{t: t, spec: s, m: m, ks: ks, runs: map[string]func(){}}
	hubAddr := freeAddr(t)
	// The operator's kubedos hub serve: its own state directory, not the
	// cluster's (a hub there would be one this host serves, for down to stop).
	opHub := filepath.Join(t.TempDir(), "operator-hub")
	if err := os.MkdirAll(opHub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := hubs.Start(context.Background(), HubSpec{KeysDir: ks.Dir, StateDir: opHub, Listen: hubAddr}); err != nil {
		t.Fatal(err)
	}
	const token = "root@pam!kubedos=00000000-0000-0000-0000-000000000000"
	pve := proxmoxtest.New("pve1", token)
	t.Cleanup(pve.Close)
	client, err := proxmox.New(pve.URL(), "pve1", token, pve.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	client.PollEvery = time.Millisecond
	work := t.TempDir()
	build := filepath.Join(t.TempDir(), "build")
	files := []string{"vars.fd"}
	for role := range m.Roles {
		files = append(files, "roles/"+role+"/disk.qcow2")
	}
	for _, f := range files {
		p := filepath.Join(build, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := []byte("image " + f)
		if f == "vars.fd" {
			body = make([]byte, proxmox.VarsSize) // Proxmox VE keeps exactly this much
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tg := &proxmox.Target{C: client, Cluster: s.Metadata.Name, Storage: "local-lvm", Bridge: "vmbr0",
		Vars: filepath.Join(build, "vars.fd"), ImportStorage: "local", WorkDir: work,
		MakeTPM: func(_ context.Context, path string) (string, error) {
			seed := make([]byte, 32)
			_, _ = rand.Read(seed)
			sum := sha256.Sum256(seed)
			return hex.EncodeToString(sum[:]), os.WriteFile(path, seed, 0o600)
		}}
	cfg := Config{Spec: s, Keys: ks, Manifest: m, BuildDir: build, Dir: dir, TargetName: spec.TargetProxmox,
		ProxmoxHub: hubAddr, Target: tg, Hub: hubs}
	return &proxmoxFixture{cfg: cfg, pve: pve, hubs: hubs, hubAddr: hubAddr, opHub: opHub}
}

// skuOf decodes the SKU of a base64=1 smbios1 property.
func skuOf(t *testing.T, smbios1 string) string {
	t.Helper()
	for _, kv := range strings.Split(smbios1, ",") {
		if v, ok := strings.CutPrefix(kv, "sku="); ok {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	return ""
}
