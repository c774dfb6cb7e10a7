package proxmox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// node makes one node's VM exist and run.
func (d *Deployer) node(ctx context.Context, p Plan, n Node, here map[int]present, up *uploader) (Result, error) {
	s := n.Shape
	r := Result{Name: s.Name, VMID: s.VMID}
	want := marker(p.Cluster, s.Name, n.ImageID)
	if vm, ok := here[s.VMID]; ok {
		// guests made sure kubedos made it for this node.
		first := firstLine(vm.cfg["description"])
		switch {
		case first == want:
			return d.existing(ctx, n, vm.Resource, vm.cfg)
		case !p.Recreate:
			return r, fmt.Errorf("VM %d holds another image (%s): recreating it destroys its data; set destructive.recreateVMs to allow it (upgrades go through kubedos node upgrade)",
				s.VMID, strings.TrimPrefix(first, marker(p.Cluster, s.Name, "")))
		}
		r.Action = ActionRecreated
	} else {
		r.Action = ActionCreated
	}
	// The new machine's identity and images first: if the hub refuses
	// the EK (a node enrolled under the name must be replaced first) or
	// an upload fails, an existing VM is still there, untouched.
	tpmPath := filepath.Join(p.WorkDir, fmt.Sprintf("tpm-%s-%d.raw", s.Name, s.VMID))
	_ = os.Remove(tpmPath)
	// The state holds the TPM's seeds: the local copy goes, and so does
	// the import volume once the VM holds its own copy.
	defer os.Remove(tpmPath)
	var err error
	if r.EKHash, err = d.MakeTPM(ctx, tpmPath); err != nil {
		return r, err
	}
	tpmSize, err := fileSize(tpmPath)
	if err != nil {
		return r, err
	}
	if tpmSize > TPMStateSize {
		return r, fmt.Errorf("TPM state %s is %d bytes; a Proxmox VE tpmstate0 volume holds %d", tpmPath, tpmSize, TPMStateSize)
	}
	if err := d.RegisterEK(ctx, s.Name, r.EKHash); err != nil {
		return r, fmt.Errorf("register EK with the hub: %w", err)
	}
	if s.Disk, err = up.ensure(ctx, n.Image, "kubedos-disk", ".qcow2"); err != nil {
		return r, err
	}
	if s.Vars, err = up.ensure(ctx, p.Vars, "kubedos-vars", ".raw"); err != nil {
		return r, err
	}
	tpmName, tpmVolid := tpmVolume(p, s)
	s.TPM = tpmVolid
	s.Marker = want
	form, err := s.Form()
	if err != nil {
		return r, err
	}
	if r.Action == ActionRecreated {
		d.Step("%s: destroying VM %d to recreate it with image %s (destructive.recreateVMs)", s.Name, s.VMID, n.ImageID)
		if here[s.VMID].Status == "running" {
			if err := d.C.StopVM(ctx, s.VMID); err != nil {
				return r, err
			}
		}
		if err := d.C.DestroyVM(ctx, s.VMID); err != nil {
			return r, err
		}
	}
	tpmSum, err := fileSHA256(tpmPath)
	if err != nil {
		return r, err
	}
	if _, err := d.C.Upload(ctx, p.ImportStorage, tpmName, tpmPath, tpmSum); err != nil {
		return r, err
	}
	createErr := d.C.CreateVM(ctx, form)
	if err := d.deleteTPM(ctx, p, s.TPM); err != nil {
		return r, errors.Join(createErr, err)
	}
	if createErr != nil {
		return r, createErr
	}
	if s.DiskGiB > 0 {
		if err := d.C.ResizeDisk(ctx, s.VMID, "virtio0", s.DiskGiB); err != nil {
			return r, fmt.Errorf("grow the disk to %d GiB (topology.nodes[].diskGiB): %w", s.DiskGiB, err)
		}
	}
	if err := d.C.StartVM(ctx, s.VMID); err != nil {
		return r, err
	}
	d.Step("%s: VM %d %s and started (image %s, EK %s…)", s.Name, s.VMID, r.Action, n.ImageID, r.EKHash[:min(16, len(r.EKHash))])
	return r, nil
}

// existing brings a VM kubedos made for this node from this image to the
// plan: its disk grown to diskGiB, started if stopped.
func (d *Deployer) existing(ctx context.Context, n Node, vm Resource, cfg map[string]any) (Result, error) {
	s := n.Shape
	r := Result{Name: s.Name, VMID: s.VMID, Action: ActionUnchanged}
	if m, _ := cfg["machine"].(string); m != s.machine() {
		r.Note = fmt.Sprintf("machine %q, the plan pins %s: the VM keeps its own until it is recreated", m, s.machine())
		d.Step("%s: VM %d: %s", s.Name, s.VMID, r.Note)
	}
	disk, _ := cfg["virtio0"].(string)
	if have, ok := driveSize(disk); ok && s.DiskGiB > 0 && have < int64(s.DiskGiB)<<30 {
		d.Step("%s: growing VM %d's disk to %d GiB", s.Name, s.VMID, s.DiskGiB)
		if err := d.C.ResizeDisk(ctx, s.VMID, "virtio0", s.DiskGiB); err != nil {
			return r, fmt.Errorf("grow the disk to %d GiB (topology.nodes[].diskGiB): %w", s.DiskGiB, err)
		}
	}
	if vm.Status == "running" {
		d.Step("%s: VM %d already running image %s", s.Name, s.VMID, n.ImageID)
		return r, nil
	}
	d.Step("%s: VM %d exists, starting it", s.Name, s.VMID)
	r.Action = ActionStarted
	return r, d.C.StartVM(ctx, s.VMID)
}

func firstLine(v any) string {
	desc, _ := v.(string)
	first, _, _ := strings.Cut(desc, "\n")
	return first
}

// driveSize reads size= of a drive's config ("local-lvm:vm-100-disk-2,size=32G").
func driveSize(drive string) (int64, bool) {
	for _, kv := range strings.Split(drive, ",") {
		v, ok := strings.CutPrefix(kv, "size=")
		if !ok || v == "" {
			continue
		}
		unit := map[byte]int64{'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[v[len(v)-1]]
		num := v
		if unit == 0 {
			unit = 1
		} else {
			num = v[:len(v)-1]
		}
		var n float64
		if _, err := fmt.Sscanf(num, "%g", &n); err != nil {
			return 0, false
		}
		return int64(n * float64(unit)), true
	}
	return 0, false
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
