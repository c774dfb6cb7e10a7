package proxmox

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// VMStatus is one entry of GET /nodes/{node}/qemu.
type VMStatus struct {
	VMID   int    `json:"vmid"`
	Name   string `json:"name"`
	Status string `json:"status"` // running | stopped
	Tags   string `json:"tags"`   // ";"-separated
}

// VMs lists the node's VMs.
func (c *Client) VMs(ctx context.Context) ([]VMStatus, error) {
	var out []VMStatus
	err := c.do(ctx, http.MethodGet, c.nodePath("qemu"), nil, &out)
	return out, err
}

// VMConfig returns a VM's configuration, every value as the API renders it.
func (c *Client) VMConfig(ctx context.Context, vmid int) (map[string]any, error) {
	var out map[string]any
	err := c.do(ctx, http.MethodGet, c.nodePath("qemu", strconv.Itoa(vmid), "config"), nil, &out)
	return out, err
}

// CreateVM creates a VM from form (see Shape.Form) and waits for it.
func (c *Client) CreateVM(ctx context.Context, form url.Values) error {
	return c.run(ctx, http.MethodPost, c.nodePath("qemu"), form)
}

// StartVM starts a VM and waits until qemu runs.
func (c *Client) StartVM(ctx context.Context, vmid int) error {
	return c.run(ctx, http.MethodPost, c.nodePath("qemu", strconv.Itoa(vmid), "status", "start"), url.Values{})
}

// StopVM stops a VM at once (not a guest shutdown) and waits.
func (c *Client) StopVM(ctx context.Context, vmid int) error {
	return c.run(ctx, http.MethodPost, c.nodePath("qemu", strconv.Itoa(vmid), "status", "stop"), url.Values{})
}

// DestroyVM removes a stopped VM with its disks, TPM and EFI state.
func (c *Client) DestroyVM(ctx context.Context, vmid int) error {
	return c.run(ctx, http.MethodDelete, c.nodePath("qemu", strconv.Itoa(vmid)),
		url.Values{"purge": {"1"}, "destroy-unreferenced-disks": {"1"}})
}

// Shape is what a node's VM is made of: the VM shape is part of the
// artifact (seed 004), so every field comes from the spec and the build.
type Shape struct {
	VMID      int
	Name      string
	Cores     int
	MemoryMiB int
	// Storage holds the VM's disks, EFI vars and TPM state (local-lvm).
	Storage string
	Bridge  string
	MAC     string
	// Disk, Vars and TPM are import volumes (local:import/…) the VM's
	// disk, EFI variable store and TPM state are copied from.
	Disk, Vars, TPM string
	UUID, Serial    string
	// Identity goes into the SMBIOS type 1 SKU as ";"-separated
	// kubedos.key=value pairs: the API sets no type 11 OEM strings.
	Identity []string
	// Marker goes into the description; it tells a VM kubedos made, and
	// from which image, from any other.
	Marker string
	Tags   []string
}

// maxSMBIOS1 is the API's length limit of the smbios1 property.
const maxSMBIOS1 = 512

// Form renders the shape as POST /nodes/{node}/qemu parameters.
func (s Shape) Form() (url.Values, error) {
	var problems []error
	for _, f := range []struct{ name, v string }{{"name", s.Name}, {"storage", s.Storage}, {"bridge", s.Bridge},
		{"disk", s.Disk}, {"vars", s.Vars}, {"tpm", s.TPM}, {"uuid", s.UUID}, {"mac", s.MAC}} {
		if f.v == "" {
			problems = append(problems, fmt.Errorf("%s is empty", f.name))
		}
	}
	if s.VMID < 100 || s.Cores < 1 || s.MemoryMiB < 16 {
		problems = append(problems, fmt.Errorf("vmid %d, cores %d, memory %d MiB: want vmid ≥ 100, a core, 16 MiB", s.VMID, s.Cores, s.MemoryMiB))
	}
	b64 := base64.StdEncoding.EncodeToString
	smbios := fmt.Sprintf("uuid=%s,serial=%s,manufacturer=%s,product=%s,sku=%s,base64=1",
		s.UUID, b64([]byte(s.Serial)), b64([]byte("kubedos")), b64([]byte("kubedos node")), b64([]byte(strings.Join(s.Identity, ";"))))
	if len(smbios) > maxSMBIOS1 {
		problems = append(problems, fmt.Errorf("SMBIOS identity is %d characters encoded, Proxmox VE allows %d", len(smbios), maxSMBIOS1))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("VM %d (%s): %w", s.VMID, s.Name, err)
	}
	return url.Values{
		"vmid":    {strconv.Itoa(s.VMID)},
		"name":    {s.Name},
		"machine": {"q35"},
		"bios":    {"ovmf"},
		"ostype":  {"l26"},
		"cores":   {strconv.Itoa(s.Cores)},
		"memory":  {strconv.Itoa(s.MemoryMiB)},
		// Our variable store: the platform's PK/KEK/db enrolled, Secure
		// Boot on. pre-enrolled-keys=0: no Microsoft keys added.
		"efidisk0":  {s.Storage + ":1,efitype=4m,pre-enrolled-keys=0,import-from=" + s.Vars},
		"tpmstate0": {s.Storage + ":1,version=v2.0,import-from=" + s.TPM},
		"virtio0":   {s.Storage + ":0,import-from=" + s.Disk},
		"boot":      {"order=virtio0"},
		"net0":      {"virtio=" + s.MAC + ",bridge=" + s.Bridge},
		"smbios1":   {smbios},
		// No graphics: the console is the serial port (qm terminal).
		"serial0":     {"socket"},
		"vga":         {"serial0"},
		"onboot":      {"1"},
		"description": {s.Marker},
		"tags":        {strings.Join(s.Tags, ";")},
	}, nil
}
