package proxmoxtest

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Creating a VM: the server's parameter checks (400), its permission checks
// (403), then the task that imports the disks.

var (
	b64RE  = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)
	uuidRE = regexp.MustCompile(`^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	// pve-tag, case-insensitive; the server stores tags lower-cased.
	tagRE = regexp.MustCompile(`^(?i)[a-z0-9_][a-z0-9_+.-]*$`)
	// pve_verify_mac_addr: the I/G bit must be clear (unicast).
	macRE = regexp.MustCompile(`^(?i)[a-f0-9][02468ace](:[a-f0-9]{2}){5}$`)
	// qemu-server's machine type pattern.
	machineRE = regexp.MustCompile(`^(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)$`)
	// NEW_DISK_RE: STORAGE:SIZE_IN_GiB.
	newDiskRE = regexp.MustCompile(`^(([^/:\s]+):)?(\d+(\.\d+)?)$`)
	knownVM   = []string{"vmid", "name", "machine", "bios", "ostype", "cores", "memory", "efidisk0", "tpmstate0",
		"virtio0", "boot", "net0", "smbios1", "serial0", "vga", "onboot", "description", "tags", "agent"}
	// The privilege each option needs on /vms/{vmid} (check_vm_modify_config_perm).
	optionPriv = map[string]string{"cores": "VM.Config.CPU", "memory": "VM.Config.Memory",
		"machine": "VM.Config.HWType", "smbios1": "VM.Config.HWType", "vga": "VM.Config.HWType",
		"name": "VM.Config.Options", "bios": "VM.Config.Options", "ostype": "VM.Config.Options", "onboot": "VM.Config.Options",
		"description": "VM.Config.Options", "agent": "VM.Config.Options", "tags": "VM.Config.Options",
		"boot": "VM.Config.Disk", "net0": "VM.Config.Network", "serial0": "VM.Config.HWType"}
)

const (
	// TPMStateSize is the size of every tpmstate0 volume (TPMSTATE_DISK_SIZE).
	TPMStateSize = 4 << 20
	// EFIVars4MSize is the size of Proxmox VE's OVMF_VARS_4M.fd: an
	// efidisk0 import keeps that many bytes of its source (qemu-img dd osize).
	EFIVars4MSize = 540672
)

// propertyString splits "default,key=value,…" (the first item may lack a key).
func propertyString(s string) (first string, kv map[string]string) {
	kv = map[string]string{}
	for i, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok && i == 0 {
			first = item
			continue
		}
		kv[k] = v
	}
	return first, kv
}

func (f *Fake) create(form url.Values) (any, *apiError) {
	bad := map[string]string{}
	for k := range form {
		if !slices.Contains(knownVM, k) {
			bad[k] = "property is not defined in schema and the schema does not allow additional properties"
		}
	}
	vmid, err := strconv.Atoi(form.Get("vmid"))
	if err != nil || vmid < 100 || vmid > 999999999 {
		bad["vmid"] = "invalid format - value does not look like a valid VM ID"
	}
	if n := form.Get("name"); n != "" && !nameRE.MatchString(n) {
		bad["name"] = "invalid format - value does not look like a valid DNS name"
	}
	if m := form.Get("machine"); m != "" && !machineRE.MatchString(m) {
		bad["machine"] = "value does not match the regex pattern"
	}
	for _, t := range strings.Split(form.Get("tags"), ";") {
		if t != "" && !tagRE.MatchString(t) {
			bad["tags"] = "invalid format - invalid tag " + t
		}
	}
	if len(form.Get("description")) > 8*1024 {
		bad["description"] = "value may only be 8192 characters long"
	}
	checkDisk(form, "efidisk0", bad)
	checkDisk(form, "tpmstate0", bad)
	checkDisk(form, "virtio0", bad)
	if _, kv := propertyString(form.Get("efidisk0")); kv["efitype"] != "" && kv["efitype"] != "2m" && kv["efitype"] != "4m" {
		bad["efidisk0"] = "invalid format - efitype: value '" + kv["efitype"] + "' does not have a value in the enumeration '2m, 4m'"
	}
	if _, kv := propertyString(form.Get("tpmstate0")); kv["version"] != "" && kv["version"] != "v1.2" && kv["version"] != "v2.0" {
		bad["tpmstate0"] = "invalid format - version: value does not have a value in the enumeration 'v1.2, v2.0'"
	}
	if _, kv := propertyString(form.Get("net0")); form.Get("net0") != "" {
		// The model is the key of the MAC (virtio=52:54:…).
		mac := kv["virtio"] + kv["e1000"] + kv["macaddr"]
		switch {
		case kv["bridge"] == "":
			bad["net0"] = "invalid format - want model=MAC,bridge=…"
		case !macRE.MatchString(mac):
			bad["net0"] = "invalid format - value does not look like a valid unicast MAC address"
		}
	}
	if s := form.Get("smbios1"); s != "" {
		checkSMBIOS1(s, bad)
	}
	if len(bad) > 0 {
		return nil, paramErr(bad)
	}
	if err := f.createPerms(vmid, form); err != nil {
		return nil, err
	}
	if vm, ok := f.vms[vmid]; ok {
		return nil, fail("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, vm.Node)
	}
	return f.newTask("qmcreate", strconv.Itoa(vmid), f.importDisks(vmid, form)), nil
}

// createPerms are create_vm's permission checks, in its order.
func (f *Fake) createPerms(vmid int, form url.Values) *apiError {
	vmACL := "/vms/" + strconv.Itoa(vmid)
	if err := f.check(vmACL, "VM.Allocate"); err != nil {
		return &apiError{status: err.status, msg: "Permission check failed"}
	}
	for _, disk := range []string{"efidisk0", "tpmstate0", "virtio0"} {
		v := form.Get(disk)
		if v == "" {
			continue
		}
		first, kv := propertyString(v)
		storage, _, _ := strings.Cut(first, ":")
		if err := f.check("/storage/"+storage, "Datastore.AllocateSpace"); err != nil {
			return err
		}
		if src := kv["import-from"]; src != "" {
			// check_volume_access on an import volume.
			srcACL := "/storage/" + src[:strings.Index(src+":", ":")]
			if !f.can(srcACL, "Datastore.Allocate") {
				if err := f.check(srcACL, "Datastore.AllocateSpace", "Datastore.Audit"); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(form)) {
		if p, ok := optionPriv[k]; ok {
			if err := f.check(vmACL, p); err != nil {
				return err
			}
		}
	}
	if _, kv := propertyString(form.Get("net0")); kv["bridge"] != "" {
		// A plain bridge is in the implicit zone "localnetwork".
		if err := f.check("/sdn/zones/localnetwork/"+kv["bridge"], "SDN.Use"); err != nil {
			return err
		}
	}
	return nil
}

// checkDisk checks a drive created from an import volume the way
// check_drive_param does: "STORAGE:0" and the options import-from needs.
// Whether the source exists is found out by the task.
func checkDisk(form url.Values, key string, bad map[string]string) {
	v := form.Get(key)
	if v == "" {
		return
	}
	first, kv := propertyString(v)
	if _, ok := kv["import-from"]; !ok {
		return
	}
	if m := newDiskRE.FindStringSubmatch(first); m == nil || m[3] != "0" {
		bad[key] = "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"
		return
	}
	need := map[string][]string{"efidisk0": {"efitype", "pre-enrolled-keys"}, "tpmstate0": {"version"}}[key]
	for _, n := range need {
		if kv[n] == "" {
			bad[key] = "need to specify '" + n + "' when using 'import-from'"
			return
		}
	}
}

func checkSMBIOS1(s string, bad map[string]string) {
	if len(s) > 512 {
		bad["smbios1"] = "value may only be 512 characters long"
		return
	}
	_, kv := propertyString("," + s)
	for k, v := range kv {
		switch k {
		case "uuid":
			if !uuidRE.MatchString(v) {
				bad["smbios1"] = "invalid format - uuid: value does not match the regex pattern"
			}
		case "base64":
		case "serial", "manufacturer", "product", "version", "sku", "family":
			if !b64RE.MatchString(v) {
				bad["smbios1"] = "invalid format - " + k + ": value does not match the regex pattern"
				continue
			}
			if kv["base64"] == "1" {
				if _, err := base64.StdEncoding.DecodeString(v); err != nil {
					bad["smbios1"] = "invalid format - " + k + ": not base64"
				}
			}
		default:
			bad["smbios1"] = "invalid format - property " + k + " is not defined in schema"
		}
	}
}

// sizeString renders bytes as Proxmox VE does in a drive's size=: the
// largest unit that divides it.
func sizeString(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
		}
	}
	return strconv.FormatInt(n, 10)
}
