package proxmox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Node is one VM to deploy.
type Node struct {
	Shape Shape // Disk, Vars and TPM are filled in by Deploy
	// Image is the role's qcow2 disk on this machine and ImageID names it
	// (the role's content-addressed ID); the VM's description records it.
	Image, ImageID string
}

// Plan is a deployment.
type Plan struct {
	Cluster string
	Nodes   []Node
	// Vars is the OVMF variable store with the platform's keys enrolled.
	Vars string
	// ImportStorage is the file-based storage uploads go to (local).
	ImportStorage string
	// Recreate allows destroying a kubedos VM that holds another image.
	Recreate bool
	// WorkDir holds each new TPM's state until it is uploaded.
	WorkDir string
}

// Action is what Deploy did to a node.
type Action string

const (
	ActionCreated   Action = "created"
	ActionRecreated Action = "recreated"
	ActionStarted   Action = "started" // it existed, stopped
	ActionUnchanged Action = "unchanged"
)

// Result is one node's outcome.
type Result struct {
	Name   string `json:"name"`
	VMID   int    `json:"vmid"`
	Action Action `json:"action"`
	// EKHash is the new TPM's EK, registered before the VM first booted
	// (empty when the VM already existed).
	EKHash string `json:"ekHash,omitempty"`
}

// Deployer deploys plans with a client.
type Deployer struct {
	C *Client
	// MakeTPM makes a fresh TPM's state at path and returns its EK hash
	// (qemu.MakeTPMStateFile in production).
	MakeTPM func(ctx context.Context, path string) (ekHash string, err error)
	// RegisterEK records a node's EK with the hub before its VM boots, so
	// only that TPM can enroll under the name.
	RegisterEK func(ctx context.Context, node, ekHash string) error
	// Step reports progress.
	Step func(format string, args ...any)
}

// MinRelease is the oldest Proxmox VE that accepts disk images as import
// uploads.
var MinRelease = [2]int{8, 4}

// marker is the first line of a kubedos VM's description.
func marker(cluster, node, imageID string) string {
	return fmt.Sprintf("kubedos: node %s of cluster %s, image %s", node, cluster, imageID)
}

// Deploy makes every node's VM exist and run, from the plan's images.
// Running it again changes nothing. A VMID held by a VM kubedos did not
// make is refused; a kubedos VM of another image is recreated only with
// Recreate. Uploads are content-addressed: an image already on the
// storage is not sent again.
func (d *Deployer) Deploy(ctx context.Context, p Plan) ([]Result, error) {
	if d.Step == nil {
		d.Step = func(string, ...any) {}
	}
	step := d.Step
	v, err := d.C.Version(ctx)
	if err != nil {
		return nil, err
	}
	if !v.AtLeast(MinRelease[0], MinRelease[1]) {
		return nil, fmt.Errorf("proxmox VE %s (release %s): kubedos needs %d.%d or later (disk images as import uploads)", v.Version, v.Release, MinRelease[0], MinRelease[1])
	}
	step("proxmox VE %s, node %s", v.Version, d.C.node)
	vms, err := d.C.VMs(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[int]VMStatus{}
	for _, vm := range vms {
		byID[vm.VMID] = vm
	}
	up := &uploader{c: d.C, storage: p.ImportStorage, step: step}
	var out []Result
	for _, n := range p.Nodes {
		r, err := d.node(ctx, p, n, byID, up)
		if err != nil {
			return out, fmt.Errorf("node %s (VM %d): %w", n.Shape.Name, n.Shape.VMID, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *Deployer) node(ctx context.Context, p Plan, n Node, byID map[int]VMStatus, up *uploader) (Result, error) {
	s := n.Shape
	r := Result{Name: s.Name, VMID: s.VMID}
	want := marker(p.Cluster, s.Name, n.ImageID)
	if vm, ok := byID[s.VMID]; ok {
		cfg, err := d.C.VMConfig(ctx, s.VMID)
		if err != nil {
			return r, err
		}
		desc, _ := cfg["description"].(string)
		first, _, _ := strings.Cut(desc, "\n")
		switch {
		case first == want && vm.Status == "running":
			d.Step("%s: VM %d already running image %s", s.Name, s.VMID, n.ImageID)
			r.Action = ActionUnchanged
			return r, nil
		case first == want:
			d.Step("%s: VM %d exists, starting it", s.Name, s.VMID)
			r.Action = ActionStarted
			return r, d.C.StartVM(ctx, s.VMID)
		case !strings.HasPrefix(first, marker(p.Cluster, s.Name, "")):
			return r, fmt.Errorf("VMID %d is taken by a VM kubedos did not make for this node (name %q): free it or change topology.nodes[].vmid", s.VMID, vm.Name)
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
	if err := d.RegisterEK(ctx, s.Name, r.EKHash); err != nil {
		return r, fmt.Errorf("register EK with the hub: %w", err)
	}
	if s.Disk, err = up.ensure(ctx, n.Image, "kubedos-disk", ".qcow2"); err != nil {
		return r, err
	}
	if s.Vars, err = up.ensure(ctx, p.Vars, "kubedos-vars", ".raw"); err != nil {
		return r, err
	}
	tpmName := fmt.Sprintf("kubedos-tpm-%s-%d.raw", s.Name, s.VMID)
	s.TPM = p.ImportStorage + ":import/" + tpmName
	form, err := s.Form()
	if err != nil {
		return r, err
	}
	form.Set("description", want)
	if r.Action == ActionRecreated {
		d.Step("%s: destroying VM %d to recreate it with image %s (destructive.recreateVMs)", s.Name, s.VMID, n.ImageID)
		if byID[s.VMID].Status == "running" {
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
	err = errors.Join(d.C.CreateVM(ctx, form), d.C.DeleteVolume(ctx, p.ImportStorage, s.TPM))
	if err != nil {
		return r, err
	}
	if err := d.C.StartVM(ctx, s.VMID); err != nil {
		return r, err
	}
	d.Step("%s: VM %d %s and started (image %s, EK %s…)", s.Name, s.VMID, r.Action, n.ImageID, r.EKHash[:min(16, len(r.EKHash))])
	return r, nil
}

// uploader sends each local file once, named by its content.
type uploader struct {
	c       *Client
	storage string
	step    func(string, ...any)
	have    map[string]bool
	// sums caches each file's SHA-256: nodes of one role share an image,
	// and hashing 100 MiB per node would be the deploy's largest cost.
	sums map[string]string
}

func (u *uploader) ensure(ctx context.Context, path, prefix, ext string) (string, error) {
	sum, ok := u.sums[path]
	if !ok {
		var err error
		if sum, err = fileSHA256(path); err != nil {
			return "", err
		}
		if u.sums == nil {
			u.sums = map[string]string{}
		}
		u.sums[path] = sum
	}
	name := prefix + "-" + sum[:32] + ext
	volid := u.storage + ":import/" + name
	if u.have == nil {
		vols, err := u.c.Volumes(ctx, u.storage, "import")
		if err != nil {
			return "", err
		}
		u.have = map[string]bool{}
		for _, v := range vols {
			u.have[v.VolID] = true
		}
	}
	if u.have[volid] {
		return volid, nil
	}
	u.step("uploading %s to %s as %s", filepath.Base(path), u.storage, name)
	if _, err := u.c.Upload(ctx, u.storage, name, path, sum); err != nil {
		return "", err
	}
	u.have[volid] = true
	return volid, nil
}
