package proxmoxtest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A VM's life after the create call: the import task, config, status,
// start, stop, destroy, resize and the guest agent.

// importDisks is the create task: it copies each import-from source into
// a volume of the VM's own and returns the task's exit status.
func (f *Fake) importDisks(vmid int, form url.Values) string {
	cfg := map[string]string{}
	for k := range form {
		cfg[k] = form.Get(k)
	}
	delete(cfg, "vmid")
	if t := cfg["tags"]; t != "" {
		cfg["tags"] = normalTags(t)
	}
	disks, sizes := map[string][]byte{}, map[string]int64{}
	for i, disk := range []string{"efidisk0", "tpmstate0", "virtio0"} {
		v := cfg[disk]
		if v == "" {
			continue
		}
		first, kv := propertyString(v)
		storage, _, _ := strings.Cut(first, ":")
		src := kv["import-from"]
		delete(kv, "import-from")
		data, ok := f.volumes[src]
		if !ok {
			return fmt.Sprintf("unable to create VM %d - cannot import from '%s' - could not get size of %s", vmid, src, src)
		}
		size := virtualSize(data)
		switch disk {
		case "efidisk0":
			// qemu-img dd osize=<size of OVMF_VARS>: the rest is dropped.
			size = EFIVars4MSize
			if kv["efitype"] == "2m" {
				size = 128 << 10
			}
			data = pad(data[:min(len(data), int(size))], size)
		case "tpmstate0":
			if len(data) > TPMStateSize {
				return fmt.Sprintf("unable to create VM %d - cannot import from '%s' - source is larger than the %d-byte TPM state volume", vmid, src, TPMStateSize)
			}
			size = TPMStateSize
			data = pad(data, size)
		default:
			data = slices.Clone(data)
		}
		own := fmt.Sprintf("%s:vm-%d-disk-%d", storage, vmid, i)
		disks[own], sizes[own] = data, size
		kv["size"] = sizeString(size)
		opts := ""
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			opts += "," + k + "=" + kv[k]
		}
		cfg[disk] = own + opts
	}
	maps.Copy(f.disks, disks)
	maps.Copy(f.sizes, sizes)
	f.vms[vmid] = &VM{Node: f.Node, Config: cfg}
	return "OK"
}

func pad(b []byte, n int64) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// virtualSize is what the guest sees of an image: a qcow2's header size,
// else the bytes.
func virtualSize(b []byte) int64 {
	if len(b) >= 32 && string(b[:4]) == "QFI\xfb" {
		return int64(binary.BigEndian.Uint64(b[24:32]))
	}
	return int64(len(b))
}

// normalTags is get_unique_tags with the default datacenter settings:
// lower-cased, sorted, each once.
func normalTags(s string) string {
	var out []string
	for _, t := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
		out = append(out, strings.ToLower(t))
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ";")
}

var resizeRE = regexp.MustCompile(`^(\+)?(\d+(\.\d+)?)([KMGT])?$`)

func (f *Fake) vm(r *http.Request, id string, rest []string) (any, *apiError) {
	vmid, err := strconv.Atoi(id)
	if err != nil {
		return nil, paramErr(map[string]string{"vmid": "invalid format - value does not look like a valid VM ID"})
	}
	vm, ok := f.vms[vmid]
	if !ok || vm.Node != f.Node {
		return nil, fail("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", f.Node, vmid)
	}
	acl := "/vms/" + id
	op := r.Method + " " + strings.Join(rest, "/")
	need := map[string]string{"GET config": "VM.Audit", "GET status/current": "VM.Audit",
		"POST status/start": "VM.PowerMgmt", "POST status/stop": "VM.PowerMgmt", "DELETE ": "VM.Allocate",
		"PUT resize": "VM.Config.Disk", "POST agent/ping": f.agentPriv(), "GET agent/network-get-interfaces": f.agentPriv()}[op]
	if need == "" {
		return nil, &apiError{status: http.StatusNotImplemented, msg: "Method '" + op + "' not implemented"}
	}
	if err := f.check(acl, need); err != nil {
		return nil, err
	}
	switch op {
	case "GET config":
		out := map[string]any{}
		for k, v := range vm.Config {
			out[k] = v
		}
		for _, k := range []string{"cores", "memory", "onboot", "agent"} {
			if n, err := strconv.Atoi(vm.Config[k]); err == nil {
				out[k] = n // integers come back as numbers
			}
		}
		out["digest"] = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(vm.Config))))[:40]
		return out, nil
	case "GET status/current":
		st := map[string]any{"vmid": vmid, "name": vm.Config["name"], "status": status(vm), "qmpstatus": status(vm)}
		if agentOn(vm) {
			st["agent"] = 1
		}
		return st, nil
	case "POST status/start":
		if vm.Running {
			return nil, fail("VM %d already running", vmid)
		}
		upid := f.newTask("qmstart", id, "OK")
		vm.Running = f.tasks[upid].exit == "OK"
		return upid, nil
	case "POST status/stop":
		vm.Running, vm.Agent = false, nil
		return f.newTask("qmstop", id, "OK"), nil
	case "DELETE ":
		if vm.Running {
			return nil, fail("VM %d is running - destroy failed", vmid)
		}
		delete(f.vms, vmid)
		for volid := range f.disks {
			if strings.Contains(volid, fmt.Sprintf(":vm-%d-disk-", vmid)) {
				delete(f.disks, volid)
				delete(f.sizes, volid)
			}
		}
		return f.newTask("qmdestroy", id, "OK"), nil
	case "PUT resize":
		return f.resize(vmid, vm, r.PostForm)
	}
	return f.agent(vmid, vm, rest[1])
}

// agentPriv: 9.0 split VM.Monitor into guest-agent privileges.
func (f *Fake) agentPriv() string {
	if strings.HasPrefix(f.Release, "8.") {
		return "VM.Monitor"
	}
	return "VM.GuestAgent.Audit"
}

func agentOn(vm *VM) bool {
	first, kv := propertyString(vm.Config["agent"])
	return first == "1" || kv["enabled"] == "1"
}

func (f *Fake) agent(vmid int, vm *VM, cmd string) (any, *apiError) {
	switch {
	case !agentOn(vm):
		return nil, fail("No QEMU guest agent configured")
	case !vm.Running:
		return nil, fail("VM %d is not running", vmid)
	case vm.Agent == nil:
		return nil, fail("QEMU guest agent is not running")
	case cmd == "ping":
		return map[string]any{"result": map[string]any{}}, nil
	}
	return map[string]any{"result": vm.Agent}, nil
}

func (f *Fake) resize(vmid int, vm *VM, form url.Values) (any, *apiError) {
	disk, size := form.Get("disk"), form.Get("size")
	m := resizeRE.FindStringSubmatch(size)
	if m == nil {
		return nil, paramErr(map[string]string{"size": "value does not match the regex pattern"})
	}
	if !slices.Contains([]string{"virtio0", "efidisk0", "tpmstate0"}, disk) {
		return nil, paramErr(map[string]string{"disk": "value '" + disk + "' does not have a value in the enumeration"})
	}
	id := strconv.Itoa(vmid)
	v, ok := vm.Config[disk]
	if !ok {
		return f.newTask("resize", id, "disk '"+disk+"' does not exist"), nil
	}
	volid, opts, _ := strings.Cut(v, ",")
	storage, _, _ := strings.Cut(volid, ":")
	if err := f.check("/storage/"+storage, "Datastore.AllocateSpace"); err != nil {
		return f.newTask("resize", id, err.msg), nil
	}
	n, _ := strconv.ParseFloat(m[2], 64)
	n *= float64(map[string]int64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m[4]])
	cur := f.sizes[volid]
	newSize := int64(n)
	if m[1] == "+" {
		newSize += cur
	}
	if newSize < cur {
		return f.newTask("resize", id, "shrinking disks is not supported"), nil
	}
	f.sizes[volid] = newSize
	_, kv := propertyString("," + opts)
	kv["size"] = sizeString(newSize)
	opts = ""
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		opts += "," + k + "=" + kv[k]
	}
	vm.Config[disk] = volid + opts
	return f.newTask("resize", id, "OK"), nil
}

// DiskSize is the size a VM's volume has as the VM sees it.
func (f *Fake) DiskSize(config string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	volid, _, _ := strings.Cut(config, ",")
	return f.sizes[volid]
}
