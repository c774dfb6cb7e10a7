package proxmox

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Current is GET /nodes/{node}/qemu/{vmid}/status/current.
type Current struct {
	VMID      int    `json:"vmid"`
	Name      string `json:"name"`
	Status    string `json:"status"`    // running | stopped
	QMPStatus string `json:"qmpstatus"` // running | paused | prelaunch | stopped …
	// Agent is 1 when the VM's config enables the guest agent channel.
	Agent int `json:"agent"`
}

// Status reads a VM's current state.
func (c *Client) Status(ctx context.Context, vmid int) (Current, error) {
	var out Current
	err := c.do(ctx, http.MethodGet, c.nodePath("qemu", strconv.Itoa(vmid), "status", "current"), nil, &out)
	return out, err
}

// ResizeDisk grows a VM's disk (virtio0) to gib GiB and waits. Proxmox VE
// refuses to shrink a disk; a disk already that size is left alone.
func (c *Client) ResizeDisk(ctx context.Context, vmid int, disk string, gib int) error {
	if gib < 1 {
		return fmt.Errorf("VM %d: disk size %d GiB: want at least 1", vmid, gib)
	}
	return c.run(ctx, http.MethodPut, c.nodePath("qemu", strconv.Itoa(vmid), "resize"),
		url.Values{"disk": {disk}, "size": {strconv.Itoa(gib) + "G"}})
}

// GuestInterface is one interface as the guest agent reports it.
type GuestInterface struct {
	Name      string `json:"name"`
	MAC       string `json:"hardware-address"`
	Addresses []struct {
		Address string `json:"ip-address"`
		Type    string `json:"ip-address-type"`
		Prefix  int    `json:"prefix"`
	} `json:"ip-addresses"`
}

// AgentPing asks the guest agent for a sign of life: an error when the VM
// has no agent channel, is not running, or no agent answers in the guest.
func (c *Client) AgentPing(ctx context.Context, vmid int) error {
	return c.do(ctx, http.MethodPost, c.nodePath("qemu", strconv.Itoa(vmid), "agent", "ping"), url.Values{}, nil)
}

// AgentInterfaces reads the guest's interfaces and addresses through the
// guest agent: the node's network as the node sees it, before (or without)
// any network path to it.
func (c *Client) AgentInterfaces(ctx context.Context, vmid int) ([]GuestInterface, error) {
	var out struct {
		Result []GuestInterface `json:"result"`
	}
	err := c.do(ctx, http.MethodGet, c.nodePath("qemu", strconv.Itoa(vmid), "agent", "network-get-interfaces"), nil, &out)
	return out.Result, err
}
