package proxmox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Day 2 on Proxmox VE: status, stop (node fence, cluster down) and, only
// when the caller passes the spec's destructive opt-in, destroy. Every call
// acts only on a VM whose description says kubedos made it for that node of
// that cluster.

// NodeState is one node's VM as Proxmox VE and its guest agent see it.
type NodeState struct {
	Name string `json:"name"`
	VMID int    `json:"vmid"`
	// VM is running, stopped, absent, or foreign (the VMID is held by a
	// guest kubedos did not make for this node; nothing else is read).
	VM string `json:"vm"`
	// Host is the Proxmox VE node that holds the VMID.
	Host string `json:"host,omitempty"`
	// Image is the image ID the VM's description names.
	Image string `json:"image,omitempty"`
	// Agent is the guest agent's state: up, not running (the guest has
	// not started it yet), off (VM stopped), or the API's refusal.
	Agent string `json:"agent,omitempty"`
	// Addresses are the guest's own addresses as its agent reports them
	// ("ens18 10.10.10.10/24"), loopback left out: what the node has
	// before (or without) any network path to it.
	Addresses []string `json:"addresses,omitempty"`
}

// Status reports every plan node's VM, and through the guest agent the
// addresses of a running one.
func (d *Deployer) Status(ctx context.Context, p Plan) ([]NodeState, error) {
	ours, foreign, err := d.owned(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]NodeState, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		id := n.Shape.VMID
		st := NodeState{Name: n.Shape.Name, VMID: id, VM: "absent"}
		r, ok := ours[id]
		switch {
		case foreign[id] != nil:
			st.VM = "foreign"
		case ok:
			st.VM, st.Host, st.Image = r.Status, r.Node, r.Image
			st.Agent, st.Addresses = d.agentState(ctx, id, r.Status)
		}
		out = append(out, st)
	}
	return out, nil
}

func (d *Deployer) agentState(ctx context.Context, vmid int, status string) (string, []string) {
	if status != "running" {
		return "off", nil
	}
	ifaces, err := d.C.AgentInterfaces(ctx, vmid)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && strings.Contains(ae.Message, "guest agent is not running"):
		return "not running", nil
	case err != nil:
		msg := err.Error()
		return msg[:min(len(msg), 200)], nil
	}
	var addrs []string
	for _, i := range ifaces {
		for _, a := range i.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || ip.IsLoopback() {
				continue
			}
			// The guest's strings: bounded before they are shown.
			addrs = append(addrs, fmt.Sprintf("%.32s %s/%d", i.Name, ip, a.Prefix))
			if len(addrs) == 16 {
				return "up", addrs
			}
		}
	}
	return "up", addrs
}

// Stop stops one node's VM at once (not a guest shutdown): node fence.
// A VM already stopped or absent is not an error; a VMID held by anything
// kubedos did not make for the node is refused.
func (d *Deployer) Stop(ctx context.Context, p Plan, name string) (Result, error) {
	for _, n := range p.Nodes {
		if n.Shape.Name != name {
			continue
		}
		one := p
		one.Nodes = []Node{n}
		res, err := d.Down(ctx, one, false)
		if len(res) == 0 {
			return Result{Name: name, VMID: n.Shape.VMID}, err
		}
		return res[0], err
	}
	return Result{}, fmt.Errorf("node %q is not in the plan", name)
}

// Down stops every plan node's VM and, with destroy (the caller passes the
// spec's destructive opt-in, never a default), destroys it with its disks,
// EFI variables and TPM state: the node's identity is gone with it. VMIDs
// held by anything else are left alone and reported.
func (d *Deployer) Down(ctx context.Context, p Plan, destroy bool) ([]Result, error) {
	if d.Step == nil {
		d.Step = func(string, ...any) {}
	}
	ours, foreign, err := d.owned(ctx, p)
	if err != nil {
		return nil, err
	}
	var out []Result
	var problems []error
	for _, n := range p.Nodes {
		id := n.Shape.VMID
		r := Result{Name: n.Shape.Name, VMID: id, Action: ActionAbsent}
		vm, ok := ours[id]
		if err := foreign[id]; err != nil {
			problems = append(problems, fmt.Errorf("node %s: %w", n.Shape.Name, err))
			continue
		}
		if !ok {
			out = append(out, r)
			continue
		}
		if vm.Status == "running" {
			d.Step("%s: stopping VM %d", n.Shape.Name, id)
			if err := d.C.StopVM(ctx, id); err != nil {
				problems = append(problems, fmt.Errorf("node %s (VM %d): %w", n.Shape.Name, id, err))
				continue
			}
		}
		r.Action = ActionStopped
		if destroy {
			d.Step("%s: destroying VM %d with its disks and TPM (destructive opt-in)", n.Shape.Name, id)
			if err := d.C.DestroyVM(ctx, id); err != nil {
				problems = append(problems, fmt.Errorf("node %s (VM %d): %w", n.Shape.Name, id, err))
				out = append(out, r)
				continue
			}
			r.Action = ActionDestroyed
		}
		out = append(out, r)
	}
	return out, errors.Join(problems...)
}
