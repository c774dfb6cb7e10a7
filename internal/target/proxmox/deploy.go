package proxmox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/target"
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
	// Vars is the OVMF variable store with the platform's keys enrolled:
	// exactly VarsSize bytes, as Proxmox VE keeps no more of it.
	Vars string
	// ImportStorage is the file-based storage uploads go to (local).
	ImportStorage string
	// Machine is the pinned machine version for every VM whose shape sets
	// none (the build's manifest records it); empty: DefaultMachine.
	Machine string
	// Recreate allows destroying a kubedos VM that holds another image.
	Recreate bool
	// WorkDir holds each new TPM's state until it is uploaded.
	WorkDir string
}

// Action is what Deploy (or Down) did to a node.
// Action is what a deploy or a down did to a node's VM: the target's.
type Action = target.Action

const (
	ActionCreated   = target.ActionCreated
	ActionRecreated = target.ActionRecreated
	ActionStarted   = target.ActionStarted
	ActionUnchanged = target.ActionUnchanged
	ActionStopped   = target.ActionStopped
	ActionDestroyed = target.ActionDestroyed
	ActionAbsent    = target.ActionAbsent
)

// Result is one node's outcome.
type Result struct {
	Name   string `json:"name"`
	VMID   int    `json:"vmid"`
	Action Action `json:"action"`
	// EKHash is the new TPM's EK, registered before the VM first booted
	// (empty when the VM already existed).
	EKHash string `json:"ekHash,omitempty"`
	// Note is a difference left as it is (an existing VM on another
	// machine version).
	Note string `json:"note,omitempty"`
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
// uploads and imports TPM state.
var MinRelease = [2]int{8, 4}

const (
	// VarsSize is the size of an efitype=4m variable store (Proxmox VE's
	// OVMF_VARS_4M.fd): an efidisk0 import keeps that many bytes.
	VarsSize = 540672
	// TPMStateSize is the size of every tpmstate0 volume.
	TPMStateSize = 4 << 20
)

var (
	// ErrVMIDTaken: a VMID of the plan is held by another guest.
	ErrVMIDTaken = errdefs.New(errdefs.ErrAlreadyExists, "VMID in use")
	// ErrPrivileges: the API token lacks privileges the deploy needs.
	ErrPrivileges = errdefs.New(errdefs.ErrPermission, "the Proxmox VE API token lacks privileges")
	// ErrLeftBehind: a volume holding secrets could not be deleted.
	ErrLeftBehind = errdefs.New(errdefs.ErrPrecondition, "volume left behind")
)

// marker is the first line of a kubedos VM's description.
func marker(cluster, node, imageID string) string {
	return fmt.Sprintf("kubedos: node %s of cluster %s, image %s", node, cluster, imageID)
}

// Deploy makes every node's VM exist and run, from the plan's images.
// Running it again changes nothing. Everything the API would refuse, a
// privilege the token lacks and a VMID held anywhere in the cluster by a
// guest kubedos did not make for that node are refused before anything is
// changed; a kubedos VM of another image is recreated only with Recreate.
// Uploads are content-addressed: an image already on the storage is not
// sent again.
func (d *Deployer) Deploy(ctx context.Context, p Plan) ([]Result, error) {
	if d.Step == nil {
		d.Step = func(string, ...any) {}
	}
	step := d.Step
	p = p.withMachine()
	v, err := d.C.Version(ctx)
	if err != nil {
		return nil, err
	}
	if !v.AtLeast(MinRelease[0], MinRelease[1]) {
		return nil, fmt.Errorf("proxmox VE %s (release %s): kubedos needs %d.%d or later (disk images as import uploads, TPM state import)", v.Version, v.Release, MinRelease[0], MinRelease[1])
	}
	step("proxmox VE %s, node %s", v.Version, d.C.node)
	if err := checkPlan(p); err != nil {
		return nil, err
	}
	if err := d.preflight(ctx, p); err != nil {
		return nil, err
	}
	here, err := d.guests(ctx, p)
	if err != nil {
		return nil, err
	}
	up := &uploader{c: d.C, storage: p.ImportStorage, step: step}
	if err := d.sweepTPMs(ctx, p, up); err != nil {
		return nil, err
	}
	var out []Result
	for _, n := range p.Nodes {
		r, err := d.node(ctx, p, n, here, up)
		if err != nil {
			return out, fmt.Errorf("node %s (VM %d): %w", n.Shape.Name, n.Shape.VMID, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (p Plan) withMachine() Plan {
	nodes := make([]Node, len(p.Nodes))
	for i, n := range p.Nodes {
		if n.Shape.Machine == "" {
			n.Shape.Machine = p.Machine
		}
		nodes[i] = n
	}
	p.Nodes = nodes
	return p
}

// checkPlan finds, without the API, every problem the server would refuse
// later or silently cut.
func checkPlan(p Plan) error {
	var problems []error
	sizes := map[string]int64{}
	for _, n := range p.Nodes {
		if err := n.Shape.Check(); err != nil {
			problems = append(problems, err)
		}
		if n.Shape.DiskGiB == 0 {
			continue
		}
		size, ok := sizes[n.Image]
		if !ok {
			var err error
			if size, err = virtualSize(n.Image); err != nil {
				problems = append(problems, fmt.Errorf("node %s: image: %w", n.Shape.Name, err))
				continue
			}
			sizes[n.Image] = size
		}
		if size > int64(n.Shape.DiskGiB)<<30 {
			// Proxmox VE never shrinks a disk: refuse before anything is made.
			problems = append(problems, fmt.Errorf("node %s: diskGiB %d is smaller than the image %s (%d bytes)", n.Shape.Name, n.Shape.DiskGiB, n.Image, size))
		}
	}
	switch fi, err := os.Stat(p.Vars); {
	case err != nil:
		problems = append(problems, fmt.Errorf("OVMF variable store: %w", err))
	case fi.Size() != VarsSize:
		// Proxmox VE copies the first VarsSize bytes of the import and
		// pads a shorter one: either way not the store that was built.
		problems = append(problems, fmt.Errorf("OVMF variable store %s is %d bytes; an efitype=4m efidisk holds exactly %d (OVMF_VARS_4M.fd)", p.Vars, fi.Size(), VarsSize))
	}
	return errors.Join(problems...)
}

// present is a plan node's VM on this node, made by kubedos for that node.
type present struct {
	Resource
	cfg map[string]any
	// Image is the image ID its description names.
	Image string
}

// guests reads the cluster's guests and refuses, all at once, every plan
// VMID held on another node, by a container, or by a VM kubedos did not
// make for that node; it returns the plan's VMs found on this node.
func (d *Deployer) guests(ctx context.Context, p Plan) (map[int]present, error) {
	here, foreign, err := d.owned(ctx, p)
	if err != nil {
		return nil, err
	}
	var problems []error
	for _, n := range p.Nodes {
		if err := foreign[n.Shape.VMID]; err != nil {
			problems = append(problems, fmt.Errorf("node %s: %w", n.Shape.Name, err))
		}
	}
	return here, errors.Join(problems...)
}

// owned sorts the plan's VMIDs as the cluster holds them: VMs kubedos made
// for that node on this node, and for any other holder an error naming it.
func (d *Deployer) owned(ctx context.Context, p Plan) (map[int]present, map[int]error, error) {
	all, err := d.C.Resources(ctx)
	if err != nil {
		return nil, nil, err
	}
	byID := map[int]Resource{}
	for _, r := range all {
		byID[r.VMID] = r
	}
	here, foreign := map[int]present{}, map[int]error{}
	for _, n := range p.Nodes {
		id := n.Shape.VMID
		r, ok := byID[id]
		switch {
		case !ok:
			continue
		case r.Type != "qemu":
			foreign[id] = fmt.Errorf("%w: VMID %d is taken by a %s (%q) on node %s: free it or change topology.nodes[].vmid", ErrVMIDTaken, id, r.Type, r.Name, r.Node)
			continue
		case r.Node != d.C.node:
			foreign[id] = fmt.Errorf("%w: VMID %d is taken by VM %q on node %s (VMIDs are cluster-wide; the spec deploys to %s): free it or change topology.nodes[].vmid", ErrVMIDTaken, id, r.Name, r.Node, d.C.node)
			continue
		}
		cfg, err := d.C.VMConfig(ctx, id)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s (VM %d): %w", n.Shape.Name, id, err)
		}
		image, ours := strings.CutPrefix(firstLine(cfg["description"]), marker(p.Cluster, n.Shape.Name, ""))
		if !ours {
			foreign[id] = fmt.Errorf("%w: VMID %d is taken by VM %q, which kubedos did not make for this node: free it or change topology.nodes[].vmid", ErrVMIDTaken, id, r.Name)
			continue
		}
		here[id] = present{r, cfg, image}
	}
	return here, foreign, nil
}

// tpmVolume names the import volume a node's new TPM state goes through.
func tpmVolume(p Plan, s Shape) (name, volid string) {
	name = fmt.Sprintf("kubedos-tpm-%s-%d.raw", s.Name, s.VMID)
	return name, p.ImportStorage + ":import/" + name
}

// sweepTPMs deletes TPM state imports an interrupted deploy left behind:
// they hold TPM seeds, of a VM that exists or of one never made.
func (d *Deployer) sweepTPMs(ctx context.Context, p Plan, up *uploader) error {
	if err := up.list(ctx); err != nil {
		return err
	}
	for _, n := range p.Nodes {
		if _, volid := tpmVolume(p, n.Shape); up.have[volid] {
			d.Step("%s: deleting %s, left by an interrupted deploy", n.Shape.Name, volid)
			if err := d.deleteTPM(ctx, p, volid); err != nil {
				return fmt.Errorf("node %s: %w", n.Shape.Name, err)
			}
			delete(up.have, volid)
		}
	}
	return nil
}

// deleteTPM deletes a TPM state import, even when ctx is cancelled (the
// operator's ^C must not leave the seeds there), and says which volume is
// left when it cannot.
func (d *Deployer) deleteTPM(ctx context.Context, p Plan, volid string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := d.C.DeleteVolume(ctx, p.ImportStorage, volid); err != nil {
		// The import holds the node's TPM seeds: whoever reads the
		// storage could act as this node. Not a warning: a failure.
		return fmt.Errorf("%w: the TPM state import %s (the node's TPM seeds) is still on storage %s: delete it (pvesm free %s) and give the token Datastore.Allocate on /storage/%s: %w",
			ErrLeftBehind, volid, p.ImportStorage, volid, p.ImportStorage, err)
	}
	return nil
}
