package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// defaultImportStorage is Proxmox VE's stock file-based storage.
const defaultImportStorage = "local"

// Deployed is each node's outcome of the last proxmox deploy.
func (c *Cluster) Deployed() []target.Ensured { return c.deployed }

// proxmoxTarget is the spec's Proxmox VE node as a target, its TPMs made
// here; work holds the variable store and each new TPM until uploaded.
func (c *Cluster) proxmoxTarget(work string) (*proxmox.Target, error) {
	p := c.Spec.Targets.Proxmox
	if p == nil {
		return nil, fmt.Errorf("%s: targets.proxmox is not configured", c.SpecPath)
	}
	if p.TokenFile == "" {
		return nil, fmt.Errorf("%s: targets.proxmox.tokenFile is required: the file holding the API token", c.SpecPath)
	}
	token, err := proxmox.ReadToken(p.TokenFile)
	if err != nil {
		return nil, err
	}
	var pin []byte
	if p.Fingerprint != "" {
		if pin, err = spec.ParseFingerprint(p.Fingerprint); err != nil {
			return nil, fmt.Errorf("targets.proxmox.fingerprint: %w", err)
		}
	}
	client, err := proxmox.New(p.APIURL, p.Node, token, pin)
	if err != nil {
		return nil, err
	}
	t := &proxmox.Target{C: client, Cluster: c.Spec.Metadata.Name, Storage: p.Storage, Bridge: p.Bridge,
		ImportStorage: p.ImportStorage, Recreate: c.Spec.Destructive.RecreateVMs, WorkDir: work, Step: c.ev.msg,
		Machine: c.Manifest.Machines["proxmox"],
		MakeTPM: func(ctx context.Context, path string) (string, error) {
			ek, err := qemu.MakeTPMStateFile(ctx, path)
			if err != nil {
				return "", err
			}
			return attest.EKHash(ek), nil
		}}
	if t.ImportStorage == "" {
		t.ImportStorage = defaultImportStorage
	}
	return t, nil
}

// deployProxmox makes the spec's VMs on its Proxmox VE node, their EKs
// registered with the hub at ProxmoxHub; Deployed has the outcomes.
func (c *Cluster) deployProxmox(ctx context.Context) error {
	if c.ProxmoxHub == "" {
		return invalid("--hub is required for the proxmox target: the address (host:port) at which the VMs reach a hub serving this cluster (kubedos hub serve)")
	}
	if _, err := netip.ParseAddrPort(c.ProxmoxHub); err != nil {
		return invalid("--hub %q: want an IP address and port the VMs reach, like 10.0.0.5:7443", c.ProxmoxHub)
	}
	work := filepath.Join(c.Dir, "proxmox")
	var t target.Target = c.Target
	if t == nil {
		pt, err := c.proxmoxTarget(work)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o700); err != nil {
			return err
		}
		vars, err := EnrolledVars(c.Keys)
		if err != nil {
			return err
		}
		pt.Vars = filepath.Join(work, "ovmf-vars.fd")
		if err := durable.WriteFile(pt.Vars, vars, 0o644); err != nil {
			return err
		}
		t = pt
	}
	var nodes []target.Node
	for _, n := range c.Spec.Topology.Nodes {
		tn, err := c.targetNode(n, c.ProxmoxHub, true)
		if err != nil {
			return err
		}
		nodes = append(nodes, tn)
	}
	c.hubAddr = c.ProxmoxHub
	admin, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	c.deployed = []target.Ensured{}
	return t.EnsureNodes(ctx, nodes, admin.RegisterEK, func(e target.Ensured) { c.deployed = append(c.deployed, e) })
}
