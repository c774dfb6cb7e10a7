package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target/proxmox"
	"github.com/kubedos/kubedos/internal/target/qemu"
)

// defaultImportStorage is Proxmox VE's stock file-based storage.
const defaultImportStorage = "local"

// proxmoxPlan turns the spec's nodes and the build into VMs: shapes from
// the spec, images from the build, the hub the nodes enroll with.
func proxmoxPlan(s *spec.ClusterSpec, m *manifest.Manifest, buildDir, hubAddr, varsPath, workDir string) (proxmox.Plan, error) {
	p := s.Targets.Proxmox
	lan, err := netip.ParsePrefix(s.Networking.LAN.CIDR)
	if err != nil {
		return proxmox.Plan{}, fmt.Errorf("networking.lan.cidr: %w", err)
	}
	plan := proxmox.Plan{Cluster: s.Metadata.Name, Vars: varsPath, ImportStorage: p.ImportStorage,
		Recreate: s.Destructive.RecreateVMs, WorkDir: workDir}
	if plan.ImportStorage == "" {
		plan.ImportStorage = defaultImportStorage
	}
	for _, n := range s.Topology.Nodes {
		rm, ok := m.Roles[string(n.Role)]
		if !ok {
			return proxmox.Plan{}, fmt.Errorf("build %s has no image for role %s (node %s)", m.BuildID, n.Role, n.Name)
		}
		identity := []string{"kubedos.name=" + n.Name, "kubedos.hub=" + hubAddr,
			"kubedos.address=" + n.Address + fmt.Sprintf("/%d", lan.Bits())}
		if gw := s.Networking.LAN.Gateway; gw != "" {
			identity = append(identity, "kubedos.gateway="+gw)
		}
		plan.Nodes = append(plan.Nodes, proxmox.Node{
			Image:   filepath.Join(buildDir, "roles", string(n.Role), build.FileDiskQcow2),
			ImageID: rm.RoleID,
			Shape: proxmox.Shape{VMID: n.VMID, Name: n.Name, Cores: n.CPUs, MemoryMiB: n.MemoryMiB,
				Storage: p.Storage, Bridge: p.Bridge, MAC: qemu.MAC(s.Metadata.Name + "/" + n.Name),
				UUID: build.DerivedUUID(s.Metadata.Name, n.Name), Serial: fmt.Sprintf("kubedos-%d", n.VMID),
				Identity: identity, Tags: []string{"kubedos", "kubedos-" + s.Metadata.Name}},
		})
	}
	return plan, nil
}

// deployProxmox deploys the build to the spec's Proxmox VE node, its EKs
// registered with the hub at hubAddr, and waits for enrollment unless
// timeout is 0.
func (c *localCluster) deployProxmox(ctx context.Context, g *globals, hubAddr string) error {
	p := c.spec.Targets.Proxmox
	if p == nil {
		return fmt.Errorf("%s: targets.proxmox is not configured", c.specPath)
	}
	if hubAddr == "" {
		return fmt.Errorf("--hub is required for the proxmox target: the address (host:port) at which the VMs reach a hub serving this cluster (kubedos hub serve)")
	}
	if _, err := netip.ParseAddrPort(hubAddr); err != nil {
		return fmt.Errorf("--hub %q: want an IP address and port the VMs reach, like 10.0.0.5:7443", hubAddr)
	}
	if p.TokenFile == "" {
		return fmt.Errorf("%s: targets.proxmox.tokenFile is required: the file holding the API token", c.specPath)
	}
	token, err := proxmox.ReadToken(p.TokenFile)
	if err != nil {
		return err
	}
	var pin []byte
	if p.Fingerprint != "" {
		if pin, err = spec.ParseFingerprint(p.Fingerprint); err != nil {
			return fmt.Errorf("targets.proxmox.fingerprint: %w", err)
		}
	}
	client, err := proxmox.New(p.APIURL, p.Node, token, pin)
	if err != nil {
		return err
	}
	work := filepath.Join(c.dir, "proxmox")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	vars, err := enrolledVars(c.keys)
	if err != nil {
		return err
	}
	varsPath := filepath.Join(work, "ovmf-vars.fd")
	if err := durable.WriteFile(varsPath, vars, 0o644); err != nil {
		return err
	}
	plan, err := proxmoxPlan(c.spec, c.manifest, c.buildDir, hubAddr, varsPath, work)
	if err != nil {
		return err
	}
	c.hubAddr = hubAddr
	admin, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	d := &proxmox.Deployer{C: client, Step: c.pr.Step,
		MakeTPM: func(ctx context.Context, path string) (string, error) {
			ek, err := qemu.MakeTPMStateFile(ctx, path)
			if err != nil {
				return "", err
			}
			return attest.EKHash(ek), nil
		},
		RegisterEK: admin.RegisterEK}
	results, err := d.Deploy(ctx, plan)
	if perr := printDeployed(g, results); perr != nil && err == nil {
		err = perr
	}
	if err != nil || c.timeout == 0 {
		return err
	}
	_, err = c.waitEnrolled(ctx, c.timeout)
	return err
}

func printDeployed(g *globals, results []proxmox.Result) error {
	if g.output == OutputJSON {
		if results == nil {
			results = []proxmox.Result{}
		}
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVMID\tACTION\tEK")
	for _, r := range results {
		ek := r.EKHash
		if len(ek) > 16 {
			ek = ek[:16] + "…"
		}
		if ek == "" {
			ek = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name, r.VMID, r.Action, ek)
	}
	return tw.Flush()
}
