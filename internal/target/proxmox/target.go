package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/target"
)

// Target adapts a Deployer to target.Target: one Proxmox VE node's VMs of
// one cluster, found again by name and the cluster's tag.
type Target struct {
	C *Client
	// MakeTPM makes a fresh TPM's state at path and returns its EK hash
	// (the cluster library passes qemu.MakeTPMStateFile's).
	MakeTPM func(ctx context.Context, path string) (ekHash string, err error)
	// Cluster names the VMs' tag (kubedos-<cluster>) and their markers.
	Cluster string
	// Storage, Bridge: where the VMs' disks live and which bridge their NIC
	// joins (targets.proxmox).
	Storage, Bridge string
	// Vars, ImportStorage, Recreate, WorkDir are the Plan's.
	Vars, ImportStorage string
	Recreate            bool
	WorkDir             string
	// Machine pins the VMs' machine version (the build manifest's;
	// empty: DefaultMachine).
	Machine string
	// Step reports progress (nil: quiet).
	Step func(format string, args ...any)
}

var _ target.Target = (*Target)(nil)

func (t *Target) tag() string { return "kubedos-" + t.Cluster }

// EnsureNetwork checks the API answers: the bridge is the Proxmox VE
// node's own, made by its administrator, not by kubedos.
func (t *Target) EnsureNetwork(ctx context.Context) (string, error) {
	v, err := t.C.Version(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("proxmox VE %s, node %s, bridge %s", v.Version, t.C.node, t.Bridge), nil
}

// RemoveNetwork leaves the bridge alone: it is not ours.
func (t *Target) RemoveNetwork(context.Context) error { return nil }

// EnsureNodes deploys the nodes as one plan, so each image is hashed and
// uploaded once.
func (t *Target) EnsureNodes(ctx context.Context, nodes []target.Node, register target.RegisterEK, done func(target.Ensured)) error {
	p := Plan{Cluster: t.Cluster, Vars: t.Vars, ImportStorage: t.ImportStorage, Recreate: t.Recreate, WorkDir: t.WorkDir, Machine: t.Machine}
	for _, n := range nodes {
		identity, err := n.Identity.Strings()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		p.Nodes = append(p.Nodes, Node{Image: n.Image, ImageID: n.ImageID,
			Shape: Shape{VMID: n.VMID, Name: n.Name, Cores: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGiB: n.DiskGiB,
				Storage: t.Storage, Bridge: t.Bridge, MAC: n.MAC, UUID: n.UUID, Serial: n.Serial,
				Identity: identity, Tags: []string{"kubedos", t.tag()}}})
	}
	if register == nil {
		// Proxmox VMs get a new TPM only with a registration: an EK no hub
		// knows could never enroll.
		return fmt.Errorf("proxmox: a new VM's EK must be registered with a hub")
	}
	d := &Deployer{C: t.C, MakeTPM: t.MakeTPM, RegisterEK: register, Step: t.Step}
	res, err := d.Deploy(ctx, p)
	for _, r := range res {
		if done != nil {
			done(target.Ensured{Name: r.Name, VMID: r.VMID, Action: target.Action(r.Action), EKHash: r.EKHash})
		}
	}
	return err
}

// find returns the cluster's VM of that name.
func (t *Target) find(ctx context.Context, name string) (VMStatus, bool, error) {
	vms, err := t.C.VMs(ctx)
	if err != nil {
		return VMStatus{}, false, err
	}
	for _, vm := range vms {
		if vm.Name == name && slices.Contains(strings.Split(vm.Tags, ";"), t.tag()) {
			return vm, true, nil
		}
	}
	return VMStatus{}, false, nil
}

// Start starts the node's VM unless it runs.
func (t *Target) Start(ctx context.Context, name string) error {
	vm, ok, err := t.find(ctx, name)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%w: %s (no VM of cluster %s)", target.ErrUnknownNode, name, t.Cluster)
	case vm.Status == "running":
		return nil
	}
	return t.C.StartVM(ctx, vm.VMID)
}

// Stop stops the node's VM at once.
func (t *Target) Stop(ctx context.Context, name string) error {
	vm, ok, err := t.find(ctx, name)
	if err != nil || !ok || vm.Status != "running" {
		return err
	}
	return t.C.StopVM(ctx, vm.VMID)
}

// Destroy stops and removes the node's VM with its disks and TPM.
func (t *Target) Destroy(ctx context.Context, name string) error {
	vm, ok, err := t.find(ctx, name)
	if err != nil || !ok {
		return err
	}
	if vm.Status == "running" {
		if err := t.C.StopVM(ctx, vm.VMID); err != nil {
			return err
		}
	}
	return t.C.DestroyVM(ctx, vm.VMID)
}

// Status reports the node's VM state; its console is qm terminal.
func (t *Target) Status(ctx context.Context, name string) (target.Status, error) {
	vm, ok, err := t.find(ctx, name)
	if err != nil || !ok {
		return target.Status{State: target.StateAbsent}, err
	}
	st := target.Status{State: target.StateStopped, Console: fmt.Sprintf("qm terminal %d (on %s)", vm.VMID, t.C.node)}
	if vm.Status == "running" {
		st.State = target.StateRunning
	}
	return st, nil
}
