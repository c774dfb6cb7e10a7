// Package cluster is the orchestration every front end reuses (the CLI
// today, a web console later): bring a spec's cluster up on its target and
// wait for its nodes to enroll, hand the hub to the master, report status,
// take it down, roll a build through its nodes, and boot-check one image.
// Progress goes out as typed events (Events); nothing here prints.
package cluster

import (
	"crypto/ed25519"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/nodeid"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// Where the hub runs for a local cluster (Config.HubOn).
const (
	HubOnMaster = "master" // handed to the master's kubedosd once it enrolled
	HubOnHost   = "host"   // kubedos hub serve on the LAN gateway, for good
)

// invalid is a refusal of the request's arguments, classed ErrInvalid.
func invalid(format string, args ...any) error {
	return errdefs.New(errdefs.ErrInvalid, fmt.Sprintf(format, args...))
}

// Config names a cluster and how to run it. Up needs every field but the
// optional ones; Status and Down need Spec, Dir and (Status) Keys.
type Config struct {
	Spec     *spec.ClusterSpec
	SpecPath string
	Keys     *sign.KeySet
	// Cert and Key are the operator's certificate and key for the hub
	// (default: the key directory's admin certificate).
	Cert, Key string
	// Manifest is BuildDir's signed manifest, its signature checked
	// (VerifiedManifest).
	Manifest *manifest.Manifest
	BuildDir string
	// Dir is the cluster's state directory, absolute: it appears in the
	// command lines of the processes it owns.
	Dir string
	// HubOn is HubOnMaster or HubOnHost (qemu only).
	HubOn string
	// Timeout bounds the wait for enrollment; 0 does not wait (proxmox).
	Timeout time.Duration
	// MaxBooting (qemu only) starts at most this many nodes at a time: the
	// master alone first, then the others in batches, each batch once the
	// previous one enrolled. 0 starts every node at once. On a small host
	// under TCG, 16 VMs booting at once each get an eighth of a core and
	// their services time out; batches keep each boot near its own speed.
	MaxBooting int
	// TargetName overrides the spec's targets.default.
	TargetName string
	// ProxmoxHub is the hub the Proxmox VMs enroll with (host:port).
	ProxmoxHub string
	// Events receives progress (nil: none).
	Events Events
	// Hub runs the local hub (nil: DetachedHub without an executable,
	// enough to find and stop one).
	Hub HubRunner
	// HubListen overrides where the local hub listens (default: the LAN
	// gateway, port api.HubPort).
	HubListen string
	// Target overrides the target the spec names (tests, other front ends).
	Target target.Target
}

// Cluster is one cluster being operated on.
type Cluster struct {
	Config
	ev events
	// hubAddr is where the hub answers; hubKeeper the master keeping it.
	hubAddr, hubKeeper string
	// reported is each node's state last reported.
	reported map[string]api.NodeState
	// deployed is the last proxmox deploy's outcomes.
	deployed []target.Ensured
}

// New returns the cluster of cfg.
func New(cfg Config) *Cluster {
	return &Cluster{Config: cfg, ev: events{cfg.Events}, reported: map[string]api.NodeState{}}
}

// HubAddr is where the cluster's hub was last found.
func (c *Cluster) HubAddr() string { return c.hubAddr }

func (c *Cluster) keysDir() string {
	if c.Keys == nil {
		return "keys"
	}
	return c.Keys.Dir
}

func (c *Cluster) access() Access { return Access{Keys: c.keysDir(), Cert: c.Cert, Key: c.Key} }

func (c *Cluster) admin() (*api.AdminClient, func(), error) { return c.access().Hub(c.hubAddr) }

// HubDir is where the local hub keeps its state, pid and address.
func (c *Cluster) HubDir() string { return filepath.Join(c.Dir, "hub") }

// NodeDir is where a node's machine and its API address are kept.
func (c *Cluster) NodeDir(name string) string { return filepath.Join(c.Dir, "nodes", name) }

func (c *Cluster) hubRunner() HubRunner {
	if c.Hub == nil {
		return DetachedHub{}
	}
	return c.Hub
}

// targetName is the target the cluster runs on.
func (c *Cluster) targetName() string {
	if c.TargetName != "" {
		return c.TargetName
	}
	return c.Spec.Targets.Default
}

// segment is the local cluster's LAN: a bridge in a network namespace.
func (c *Cluster) segment() (qemu.Segment, error) {
	return qemu.NewSegment(c.Spec.Metadata.Name, c.Spec.Networking.LAN.CIDR, c.Spec.Networking.LAN.Gateway)
}

// qemuTarget is the local target of the spec, without the variable store
// (startTarget adds it: only starting a VM needs it).
func (c *Cluster) qemuTarget() (*qemu.Target, error) {
	seg, err := c.segment()
	if err != nil {
		return nil, err
	}
	return &qemu.Target{Segment: seg, Dir: filepath.Join(c.Dir, "nodes"), Recreate: c.Spec.Destructive.RecreateVMs, Step: c.ev.msg}, nil
}

// nodeAddress is a node's LAN address with the LAN's prefix length.
func (c *Cluster) nodeAddress(n spec.Node) (netip.Prefix, error) {
	lan, err := netip.ParsePrefix(c.Spec.Networking.LAN.CIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("networking.lan.cidr: %w", err)
	}
	a, err := netip.ParseAddr(n.Address)
	if err != nil || !lan.Contains(a) {
		return netip.Prefix{}, fmt.Errorf("topology.nodes[%s].address %q: not an address inside %s", n.Name, n.Address, lan)
	}
	if gw, err := netip.ParseAddr(c.Spec.Networking.LAN.Gateway); err == nil && gw == a {
		return netip.Prefix{}, fmt.Errorf("topology.nodes[%s].address %s is the LAN gateway (the host's end, where the hub listens)", n.Name, a)
	}
	return netip.PrefixFrom(a, lan.Bits()), nil
}

// targetNode is what the target makes of a spec node: its image from the
// build, its identity naming hubAddr. withGateway puts the LAN gateway in
// the identity: the local LAN's gateway is this host's end, which does not
// route, so qemu nodes get no default route (as before nodeid).
func (c *Cluster) targetNode(n spec.Node, hubAddr string, withGateway bool) (target.Node, error) {
	rm, ok := c.Manifest.Roles[string(n.Role)]
	if !ok {
		return target.Node{}, fmt.Errorf("build %s has no image for role %s (node %s)", c.Manifest.BuildID, n.Role, n.Name)
	}
	addr, err := c.nodeAddress(n)
	if err != nil {
		return target.Node{}, err
	}
	id := nodeid.Identity{Name: n.Name, Hub: hubAddr, Address: addr}
	if gw := c.Spec.Networking.LAN.Gateway; withGateway && gw != "" {
		if id.Gateway, err = netip.ParseAddr(gw); err != nil {
			return target.Node{}, fmt.Errorf("networking.lan.gateway: %w", err)
		}
	}
	return target.Node{Name: n.Name, Role: string(n.Role), VMID: n.VMID, CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGiB: n.DiskGiB,
		Image:   filepath.Join(c.BuildDir, "roles", string(n.Role), build.FileDiskQcow2),
		ImageID: rm.RoleID, Identity: id,
		UUID: build.DerivedUUID(c.Spec.Metadata.Name, n.Name), Serial: fmt.Sprintf("kubedos-%d", n.VMID),
		MAC: qemu.MAC(c.Spec.Metadata.Name + "/" + n.Name)}, nil
}

// master is the spec's master (validation requires exactly one).
func (c *Cluster) master() (spec.Node, error) {
	for _, n := range c.Spec.Topology.Nodes {
		if n.Role == spec.RoleMaster {
			return n, nil
		}
	}
	return spec.Node{}, fmt.Errorf("cluster %s has no master to keep the hub", c.Spec.Metadata.Name)
}

// VerifiedManifest reads a build's manifest and checks its signature with
// the platform's artifact key: the hub's policy is only what was signed.
func VerifiedManifest(dir string, ks *sign.KeySet) (*manifest.Manifest, error) {
	m, _, _, err := VerifiedBuild(dir, ks.SigningPub)
	return m, err
}

// VerifiedBuild reads dir's manifest and its signature and checks it with
// the artifact key pub; it returns both as read, for the hub (AssignBuild).
func VerifiedBuild(dir string, pub ed25519.PublicKey) (m *manifest.Manifest, raw, sig []byte, err error) {
	m, raw, err = manifest.Read(filepath.Join(dir, manifest.ManifestFile))
	if err != nil {
		return nil, nil, nil, err
	}
	sig, err = os.ReadFile(filepath.Join(dir, manifest.SignatureFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("build %s: %w", dir, err)
	}
	if err := sign.VerifyBlob(pub, raw, sig); err != nil {
		return nil, nil, nil, fmt.Errorf("build %s: manifest signature: %w", dir, err)
	}
	return m, raw, sig, nil
}

// NodeAPIAddr is where node name's API answers: the address cluster up
// recorded for it here, else its spec address, else its name, on
// api.NodeAPIPort.
func (c *Cluster) NodeAPIAddr(name string) string {
	if b, err := os.ReadFile(filepath.Join(c.NodeDir(name), "api.addr")); err == nil {
		if a := strings.TrimSpace(string(b)); a != "" {
			return a
		}
	}
	host := name
	if c.Spec != nil {
		if n, ok := c.Spec.NodeByName(name); ok && n.Address != "" {
			host = n.Address
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(api.NodeAPIPort))
}

// EnrolledVars is Debian's blank OVMF variable store with the platform's
// PK, KEK and db enrolled: Secure Boot on, no Microsoft keys.
func EnrolledVars(ks *sign.KeySet) ([]byte, error) {
	var lists [3][]byte
	for i, rel := range []string{sign.FilePKESL, sign.FileKEKESL, sign.FileDBESL} {
		b, err := os.ReadFile(ks.Path(rel))
		if err != nil {
			return nil, err
		}
		lists[i] = b
	}
	blank, err := os.ReadFile(qemu.OVMFVarsBlank)
	if err != nil {
		return nil, fmt.Errorf("OVMF firmware (Debian package ovmf): %w", err)
	}
	return qemu.EnrollSecureBoot(blank, lists[0], lists[1], lists[2], ks.DB.NotBefore)
}
