package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/target"
)

// Files of a node's machine in its directory, beside detached.go's.
const (
	diskFile   = "disk.qcow2"
	imageFile  = "image"   // the role image ID the disk was made from
	configFile = "vm.json" // the VMConfig, so a later run can Start it
	serialFile = "serial.log"
)

// Target runs a cluster's nodes as detached VMs on this host, one
// directory per node under Dir, their NICs on Segment.
type Target struct {
	Segment Segment
	Dir     string
	// Vars is the OVMF variable store with the platform's keys enrolled.
	Vars []byte
	// Recreate allows replacing a disk made from another image.
	Recreate bool
	// Step reports progress (nil: quiet).
	Step func(format string, args ...any)
}

var _ target.Target = (*Target)(nil)

// NodeDir is where a node's machine keeps its disk, TPM and console log.
func (t *Target) NodeDir(name string) string { return filepath.Join(t.Dir, name) }

func (t *Target) step(format string, args ...any) {
	if t.Step != nil {
		t.Step(format, args...)
	}
}

// EnsureNetwork brings the segment up.
func (t *Target) EnsureNetwork(ctx context.Context) (string, error) {
	if err := t.Segment.Up(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("LAN %s: bridge in network namespace %s, host end %s", t.Segment.Gateway, t.Segment.Netns, t.Segment.HostIf), nil
}

// RemoveNetwork removes the segment's namespace with every tap in it.
func (t *Target) RemoveNetwork(ctx context.Context) error { return t.Segment.Down(ctx) }

// EnsureNodes makes each node's disk (a copy-on-write overlay of its
// image), tap and TPM, registers the TPM's EK and starts the VM, unless
// it runs.
func (t *Target) EnsureNodes(ctx context.Context, nodes []target.Node, register target.RegisterEK, done func(target.Ensured)) error {
	for _, n := range nodes {
		e, err := t.ensure(ctx, n, register)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if done != nil {
			done(e)
		}
	}
	return nil
}

func (t *Target) ensure(ctx context.Context, n target.Node, register target.RegisterEK) (target.Ensured, error) {
	e := target.Ensured{Name: n.Name, VMID: n.VMID, Action: target.ActionUnchanged}
	dir := t.NodeDir(n.Name)
	if _, ok := Running(dir); ok {
		return e, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return e, err
	}
	base, err := filepath.Abs(n.Image)
	if err != nil {
		return e, err
	}
	disk, marker := filepath.Join(dir, diskFile), filepath.Join(dir, imageFile)
	e.Action = target.ActionStarted
	if prev, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(prev)) != n.ImageID {
		if !t.Recreate {
			return e, fmt.Errorf("its disk holds image %s, the build has %s: recreating the VM destroys its data; set destructive.recreateVMs to allow it (upgrades go through kubedos node upgrade)",
				strings.TrimSpace(string(prev)), n.ImageID)
		}
		t.step("%s: recreating the disk for image %s (destructive.recreateVMs)", n.Name, n.ImageID)
		_ = os.Remove(disk)
		e.Action = target.ActionRecreated
	}
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk).CombinedOutput(); err != nil {
			return e, fmt.Errorf("disk: %w: %s", err, out)
		}
		if err := durable.WriteFile(marker, []byte(n.ImageID+"\n"), 0o644); err != nil {
			return e, err
		}
		if e.Action == target.ActionStarted {
			e.Action = target.ActionCreated
		}
	}
	oem, err := n.Identity.Strings()
	if err != nil {
		return e, err
	}
	tap := fmt.Sprintf("tap%d", n.VMID)
	if err := t.Segment.AddTap(ctx, tap); err != nil {
		return e, err
	}
	ek, err := ReadEK(ctx, dir)
	if err != nil {
		return e, err
	}
	e.EKHash = attest.EKHash(ek)
	if register != nil {
		if err := register(ctx, n.Name, e.EKHash); err != nil {
			return e, fmt.Errorf("register EK with the hub: %w", err)
		}
	}
	cfg := VMConfig{Name: "kubedos-" + n.Name, Dir: dir, Disk: disk, MemoryMiB: n.MemoryMiB, CPUs: n.CPUs, Reboot: true,
		UUID: n.UUID, Serial: n.Serial, OEMStrings: oem,
		TAP: &TAP{Netns: t.Segment.Netns, Name: tap, MAC: n.MAC}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return e, err
	}
	if err := durable.WriteFile(filepath.Join(dir, configFile), append(b, '\n'), 0o644); err != nil {
		return e, err
	}
	cfg.Vars = t.Vars
	return e, StartDetached(ctx, cfg)
}

// Start starts a node's VM as EnsureNodes last made it.
func (t *Target) Start(ctx context.Context, name string) error {
	dir := t.NodeDir(name)
	if _, ok := Running(dir); ok {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s (never made in %s)", target.ErrUnknownNode, name, t.Dir)
	}
	if err != nil {
		return err
	}
	var cfg VMConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	if cfg.TAP != nil {
		if err := t.Segment.AddTap(ctx, cfg.TAP.Name); err != nil {
			return err
		}
	}
	cfg.Vars = t.Vars
	return StartDetached(ctx, cfg)
}

// Stop ends the node's VM and its swtpm.
func (t *Target) Stop(_ context.Context, name string) error { return Stop(t.NodeDir(name)) }

// Destroy stops the node's VM and removes its directory: disk, TPM, log.
func (t *Target) Destroy(ctx context.Context, name string) error {
	if err := t.Stop(ctx, name); err != nil {
		return err
	}
	return os.RemoveAll(t.NodeDir(name))
}

// Status reads the node's pid file and directory.
func (t *Target) Status(_ context.Context, name string) (target.Status, error) {
	dir := t.NodeDir(name)
	st := target.Status{State: target.StateAbsent, Console: filepath.Join(dir, serialFile)}
	if pid, ok := Running(dir); ok {
		st.State, st.PID = target.StateRunning, pid
	} else if _, err := os.Stat(filepath.Join(dir, diskFile)); err == nil {
		st.State = target.StateStopped
	}
	return st, nil
}
