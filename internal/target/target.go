// Package target is where a cluster's machines run: the interface the
// cluster library drives (internal/cluster), implemented by target/qemu
// (VMs on this host) and target/proxmox (VMs through the Proxmox VE API),
// and checked by one conformance suite (target/targettest).
package target

import (
	"context"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/nodeid"
)

// ErrUnknownNode: the target holds no machine of that name.
var ErrUnknownNode = errdefs.New(errdefs.ErrNotFound, "no such node on the target")

// Node is one machine to make: what the spec and the build say of it.
type Node struct {
	Name      string
	Role      string
	VMID      int
	CPUs      int
	MemoryMiB int
	// DiskGiB is the size the machine's disk grows to (0: the image's).
	DiskGiB int
	// Image is the role's qcow2 disk on this machine and ImageID names it
	// (the role's content-addressed ID): a machine made from another image
	// is only recreated when the target allows it.
	Image, ImageID string
	// Identity reaches the machine in SMBIOS (internal/nodeid).
	Identity nodeid.Identity
	// UUID, Serial and MAC are derived from the spec: the same node gets
	// the same machine identity on every run.
	UUID, Serial, MAC string
}

// RegisterEK records a new TPM's EK (its hash) with the hub before the
// machine first boots, so only that TPM can enroll under node's name. An
// error leaves the machine not started.
type RegisterEK func(ctx context.Context, node, ekHash string) error

// Action is what EnsureNodes did to a node's machine.
type Action string

const (
	ActionCreated   Action = "created"
	ActionRecreated Action = "recreated"
	ActionStarted   Action = "started" // it existed, stopped
	ActionUnchanged Action = "unchanged"
	ActionStopped   Action = "stopped"   // a stop or a down
	ActionDestroyed Action = "destroyed" // a down with destroy
	ActionAbsent    Action = "absent"    // a down: nothing there
)

// Ensured is one node's outcome (the JSON of kubedos deploy -o json).
type Ensured struct {
	Name   string `json:"name"`
	VMID   int    `json:"vmid"`
	Action Action `json:"action"`
	// EKHash is the machine's EK, registered before it booted when a
	// registration was asked for (empty when the machine was not touched).
	EKHash string `json:"ekHash,omitempty"`
}

// State is a machine's power state as the target sees it.
type State string

const (
	StateRunning State = "running"
	StateStopped State = "stopped"
	StateAbsent  State = "absent" // never made, or destroyed
)

// Status is one machine's state.
type Status struct {
	State State
	// PID is the local process of a running machine (qemu), else 0.
	PID int
	// Console is where its serial console is read: a file on this host
	// (qemu) or how to attach to it (proxmox).
	Console string
}

// Target makes and runs a cluster's machines. Every method is idempotent:
// running it again with nothing changed changes nothing.
type Target interface {
	// EnsureNetwork makes the LAN the machines share exist and says what
	// it is (for the operator).
	EnsureNetwork(ctx context.Context) (string, error)
	// RemoveNetwork removes what EnsureNetwork made (nothing on a target
	// whose network is not ours); machines must be stopped first.
	RemoveNetwork(ctx context.Context) error
	// EnsureNodes makes each node's machine exist with its disk, its TPM
	// and its identity, and run. A new TPM's EK goes through register
	// before its machine first boots (register nil: none is registered).
	// done is called with each node's outcome as it is reached.
	EnsureNodes(ctx context.Context, nodes []Node, register RegisterEK, done func(Ensured)) error
	// Start starts a stopped machine; a running one is left alone.
	Start(ctx context.Context, name string) error
	// Stop stops a machine at once (a power cut); a stopped or absent one
	// is not an error.
	Stop(ctx context.Context, name string) error
	// Destroy removes a machine with its disk and TPM; absent is not an
	// error.
	Destroy(ctx context.Context, name string) error
	// Status reports a machine's state; one never made is StateAbsent.
	Status(ctx context.Context, name string) (Status, error)
}
