package proxmox

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kubedos/kubedos/internal/manifest"
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
	// DiskGiB is the size the VM's disk is grown to after the import
	// (topology.nodes[].diskGiB); 0 keeps the image's size.
	DiskGiB int
	// Storage holds the VM's disks, EFI vars and TPM state (local-lvm).
	Storage string
	Bridge  string
	MAC     string
	// Machine pins the QEMU machine version (pc-q35-9.2): an unpinned
	// q35 follows the host's QEMU, and the hardware the firmware sees
	// (and measures) would change with a Proxmox VE upgrade. Empty:
	// DefaultMachine.
	Machine string
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

// DefaultMachine is the machine version kubedos pins, as the build's
// manifest records it (machines.proxmox): the newest q35 that Proxmox VE
// 8.4's QEMU (9.2) knows; 9.x's QEMU 10 keeps it.
const DefaultMachine = manifest.ProxmoxMachine

// maxSMBIOS1 is the API's length limit of the smbios1 property.
const maxSMBIOS1 = 512

var (
	// machineRE is a pinned q35 (qemu-server accepts more; kubedos pins).
	machineRE = regexp.MustCompile(`^pc-q35-\d+\.\d+(\+pve\d+)?$`)
	// unicastRE is pve-common's mac-addr format: the I/G bit clear.
	unicastRE = regexp.MustCompile(`^(?i)[0-9a-f][02468ace](:[0-9a-f]{2}){5}$`)
	tagRE     = regexp.MustCompile(`^(?i)[a-z0-9_][a-z0-9_+.-]*$`)
)

// NormalTags renders tags as Proxmox VE stores them (get_unique_tags with
// the default datacenter settings): lower-cased, sorted, each once. A VM's
// tags read back equal to what was sent only in this form.
func NormalTags(tags []string) string {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		out = append(out, strings.ToLower(t))
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ";")
}

func (s Shape) machine() string {
	if s.Machine == "" {
		return DefaultMachine
	}
	return s.Machine
}

// Check reports every problem the API would refuse in the shape's own
// fields (not the volumes Deploy fills in), so a deploy can refuse before
// it changes anything.
func (s Shape) Check() error {
	var problems []error
	for _, f := range []struct{ name, v string }{{"name", s.Name}, {"storage", s.Storage}, {"bridge", s.Bridge},
		{"uuid", s.UUID}, {"mac", s.MAC}} {
		if f.v == "" {
			problems = append(problems, fmt.Errorf("%s is empty", f.name))
		}
	}
	if s.VMID < 100 || s.Cores < 1 || s.MemoryMiB < 16 || s.DiskGiB < 0 {
		problems = append(problems, fmt.Errorf("vmid %d, cores %d, memory %d MiB, disk %d GiB: want vmid ≥ 100, a core, 16 MiB, a disk size ≥ 0", s.VMID, s.Cores, s.MemoryMiB, s.DiskGiB))
	}
	if s.MAC != "" && !unicastRE.MatchString(s.MAC) {
		problems = append(problems, fmt.Errorf("MAC %s: Proxmox VE takes unicast addresses only (the low bit of the first octet clear)", s.MAC))
	}
	if !machineRE.MatchString(s.machine()) {
		problems = append(problems, fmt.Errorf("machine %q: want a pinned q35 version such as %s", s.Machine, DefaultMachine))
	}
	for _, t := range s.Tags {
		if !tagRE.MatchString(t) {
			problems = append(problems, fmt.Errorf("tag %q: want letters, digits and _ + . - (not first)", t))
		}
	}
	if n := len(s.smbios1()); n > maxSMBIOS1 {
		problems = append(problems, fmt.Errorf("SMBIOS identity is %d characters encoded, Proxmox VE allows %d", n, maxSMBIOS1))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("VM %d (%s): %w", s.VMID, s.Name, err)
	}
	return nil
}

func (s Shape) smbios1() string {
	out := "uuid=" + s.UUID
	// An empty field is left out: the server's pattern wants one
	// base64 character at least.
	for _, f := range [][2]string{{"serial", s.Serial}, {"manufacturer", "kubedos"}, {"product", "kubedos node"},
		{"sku", strings.Join(s.Identity, ";")}} {
		if f[1] != "" {
			out += "," + f[0] + "=" + base64.StdEncoding.EncodeToString([]byte(f[1]))
		}
	}
	return out + ",base64=1"
}

// Form renders the shape as POST /nodes/{node}/qemu parameters.
func (s Shape) Form() (url.Values, error) {
	err := s.Check()
	var missing []error
	for _, f := range []struct{ name, v string }{{"disk", s.Disk}, {"vars", s.Vars}, {"tpm", s.TPM}} {
		if f.v == "" {
			missing = append(missing, fmt.Errorf("VM %d (%s): %s is empty", s.VMID, s.Name, f.name))
		}
	}
	if err := errors.Join(append([]error{err}, missing...)...); err != nil {
		return nil, err
	}
	return url.Values{
		"vmid":    {strconv.Itoa(s.VMID)},
		"name":    {s.Name},
		"machine": {s.machine()},
		"bios":    {"ovmf"},
		"ostype":  {"l26"},
		"cores":   {strconv.Itoa(s.Cores)},
		"memory":  {strconv.Itoa(s.MemoryMiB)},
		// Size 0 on every drive made from an import volume: qemu-server
		// refuses any other with import-from and sizes the volume itself
		// (the VARS size of efitype, 4 MiB of TPM state, the image's).
		// Our variable store: the platform's PK/KEK/db enrolled, Secure
		// Boot on. pre-enrolled-keys=0: no Microsoft keys added.
		"efidisk0":  {s.Storage + ":0,efitype=4m,pre-enrolled-keys=0,import-from=" + s.Vars},
		"tpmstate0": {s.Storage + ":0,version=v2.0,import-from=" + s.TPM},
		"virtio0":   {s.Storage + ":0,import-from=" + s.Disk},
		"boot":      {"order=virtio0"},
		"net0":      {"virtio=" + s.MAC + ",bridge=" + s.Bridge},
		"smbios1":   {s.smbios1()},
		// The guest agent's virtio-serial channel: a node's state before
		// it has a network (kubedos cluster status).
		"agent": {"1"},
		// No graphics: the console is the serial port (qm terminal).
		"serial0":     {"socket"},
		"vga":         {"serial0"},
		"onboot":      {"1"},
		"description": {s.Marker},
		"tags":        {NormalTags(s.Tags)},
	}, nil
}
