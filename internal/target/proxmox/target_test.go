package proxmox_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/nodeid"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
	"github.com/kubedos/kubedos/internal/target/targettest"
)

func TestTargetConformance(t *testing.T) {
	targettest.Suite(t, func(t *testing.T) targettest.Harness {
		const token = "root@pam!kubedos=00000000-0000-0000-0000-000000000000"
		f := proxmoxtest.New("pve1", token)
		t.Cleanup(f.Close)
		c, err := proxmox.New(f.URL(), "pve1", token, f.Fingerprint())
		if err != nil {
			t.Fatal(err)
		}
		c.PollEvery = time.Millisecond
		dir := t.TempDir()
		write := func(name, body string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		image := write("worker.qcow2", "worker image")
		tg := &proxmox.Target{C: c, Cluster: "lab", Storage: "local-lvm", Bridge: "vmbr0",
			Vars: write("vars.fd", strings.Repeat("v", proxmox.VarsSize)), ImportStorage: "local", WorkDir: dir,
			MakeTPM: func(_ context.Context, path string) (string, error) {
				seed := make([]byte, 32)
				_, _ = rand.Read(seed)
				sum := sha256.Sum256(seed)
				return hex.EncodeToString(sum[:]), os.WriteFile(path, seed, 0o600)
			}}
		var nodes []target.Node
		for i, name := range []string{"w-1", "w-2"} {
			vmid := 101 + i
			nodes = append(nodes, target.Node{Name: name, Role: "worker", VMID: vmid, CPUs: 1, MemoryMiB: 512,
				Image: image, ImageID: "w1", UUID: fmt.Sprintf("6f1e6b9c-0000-4000-8000-%012d", vmid),
				Serial: fmt.Sprintf("kubedos-%d", vmid), MAC: fmt.Sprintf("52:54:00:00:00:%02x", vmid%256),
				Identity: nodeid.Identity{Name: name, Hub: "10.0.0.10:7443", Address: netip.MustParsePrefix(fmt.Sprintf("10.0.0.%d/24", 21+i)),
					Gateway: netip.MustParseAddr("10.0.0.1")}})
		}
		return targettest.Harness{Target: tg, Nodes: nodes}
	})
}
