package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Need is a privilege the deploy uses on an ACL path; any of Privs will do.
type Need struct {
	Path  string
	Privs []string
	Why   string
}

// Needs lists every privilege a deploy of p uses, per ACL path, as Proxmox
// VE checks them (qemu-server create_vm, pve-storage upload/content,
// pve-manager cluster/resources). docs/proxmox.md shows the same list.
func Needs(p Plan) []Need {
	out := []Need{
		{"/storage/" + p.ImportStorage, []string{"Datastore.AllocateTemplate"}, "upload images and TPM state as import volumes"},
		{"/storage/" + p.ImportStorage, []string{"Datastore.Allocate"}, "delete a node's TPM state import once its VM holds a copy"},
		{"/storage/" + p.ImportStorage, []string{"Datastore.Audit", "Datastore.AllocateSpace"}, "list the import volumes, import from them"},
	}
	seen := map[string]bool{}
	for _, n := range p.Nodes {
		s := n.Shape
		for _, nd := range []Need{
			{"/storage/" + s.Storage, []string{"Datastore.AllocateSpace"}, "allocate the VM's disk, EFI vars and TPM state"},
			{"/sdn/zones/localnetwork/" + s.Bridge, []string{"SDN.Use"}, "attach the VM to the bridge"},
		} {
			if !seen[nd.Path+nd.Privs[0]] {
				seen[nd.Path+nd.Privs[0]] = true
				out = append(out, nd)
			}
		}
		vm := "/vms/" + strconv.Itoa(s.VMID)
		out = append(out, []Need{
			{vm, []string{"VM.Allocate"}, "create (and, with destructive.recreateVMs, destroy) the VM"},
			{vm, []string{"VM.Audit"}, "see the VMID cluster-wide and read the VM's config"},
			{vm, []string{"VM.Config.CPU"}, "cores"},
			{vm, []string{"VM.Config.Memory"}, "memory"},
			{vm, []string{"VM.Config.Disk"}, "boot order, disk resize"},
			{vm, []string{"VM.Config.Network"}, "net0"},
			{vm, []string{"VM.Config.HWType"}, "machine, smbios1, vga, serial0: socket"},
			{vm, []string{"VM.Config.Options"}, "name, description, tags, onboot, agent"},
			{vm, []string{"VM.PowerMgmt"}, "start and stop the VM"},
		}...)
	}
	return out
}

// preflight refuses a deploy the token could only do part of, naming every
// privilege it lacks, before anything is changed: a deploy that stopped
// half-way could leave a node's TPM seeds on the import storage.
func (d *Deployer) preflight(ctx context.Context, p Plan) error {
	held := map[string]map[string]bool{}
	var missing []string
	for _, nd := range Needs(p) {
		have, ok := held[nd.Path]
		if !ok {
			var err error
			if have, err = d.C.Permissions(ctx, nd.Path); err != nil {
				return fmt.Errorf("read the API token's privileges on %s: %w", nd.Path, err)
			}
			held[nd.Path] = have
		}
		if !slices.ContainsFunc(nd.Privs, func(p string) bool { return have[p] }) {
			missing = append(missing, fmt.Sprintf("%s on %s (%s)", strings.Join(nd.Privs, " or "), nd.Path, nd.Why))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	const shown = 12
	more := ""
	if len(missing) > shown {
		more = fmt.Sprintf("; and %d more", len(missing)-shown)
		missing = missing[:shown]
	}
	return fmt.Errorf("%w: %s%s (see docs/proxmox.md for the role to give it)", ErrPrivileges, strings.Join(missing, "; "), more)
}
