package proxmoxtest

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The VMs: list, create (with the server's parameter checks), config,
// start, stop, destroy.

func (f *Fake) list() []map[string]any {
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(f.vms)) {
		vm := f.vms[id]
		status := "stopped"
		if vm.Running {
			status = "running"
		}
		e := map[string]any{"vmid": id, "name": vm.Config["name"], "status": status}
		if t := vm.Config["tags"]; t != "" {
			e["tags"] = t
		}
		out = append(out, e)
	}
	return out
}

var (
	b64RE   = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)
	uuidRE  = regexp.MustCompile(`^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$`)
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	tagRE   = regexp.MustCompile(`^[a-z0-9_][a-z0-9_+.-]*$`)
	macRE   = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	knownVM = []string{"vmid", "name", "machine", "bios", "ostype", "cores", "memory", "efidisk0", "tpmstate0",
		"virtio0", "boot", "net0", "smbios1", "serial0", "vga", "onboot", "description", "tags"}
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
	for _, t := range strings.Split(form.Get("tags"), ";") {
		if t != "" && !tagRE.MatchString(t) {
			bad["tags"] = "invalid format - invalid tag " + t
		}
	}
	if len(form.Get("description")) > 8*1024 {
		bad["description"] = "value may only be 8192 characters long"
	}
	f.checkDisk(form, "efidisk0", []string{"efitype", "pre-enrolled-keys"}, bad)
	f.checkDisk(form, "tpmstate0", []string{"version"}, bad)
	f.checkDisk(form, "virtio0", nil, bad)
	if _, kv := propertyString(form.Get("efidisk0")); kv["efitype"] != "" && kv["efitype"] != "2m" && kv["efitype"] != "4m" {
		bad["efidisk0"] = "invalid format - efitype: value '" + kv["efitype"] + "' does not have a value in the enumeration '2m, 4m'"
	}
	if _, kv := propertyString(form.Get("tpmstate0")); kv["version"] != "" && kv["version"] != "v1.2" && kv["version"] != "v2.0" {
		bad["tpmstate0"] = "invalid format - version: value does not have a value in the enumeration 'v1.2, v2.0'"
	}
	if _, kv := propertyString(form.Get("net0")); form.Get("net0") != "" {
		// The model is the key of the MAC (virtio=52:54:…).
		mac := kv["virtio"] + kv["e1000"] + kv["macaddr"]
		if !macRE.MatchString(mac) || kv["bridge"] == "" {
			bad["net0"] = "invalid format - want model=MAC,bridge=…"
		}
	}
	if s := form.Get("smbios1"); s != "" {
		checkSMBIOS1(s, bad)
	}
	if len(bad) > 0 {
		return nil, paramErr(bad)
	}
	if _, ok := f.vms[vmid]; ok {
		return nil, fail("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, f.Node)
	}
	cfg := map[string]string{}
	for k := range form {
		cfg[k] = form.Get(k)
	}
	delete(cfg, "vmid")
	// Imported disks become the VM's own volumes.
	for i, disk := range []string{"efidisk0", "tpmstate0", "virtio0"} {
		if v := cfg[disk]; v != "" {
			storage, _, _ := strings.Cut(v, ":")
			_, kv := propertyString(v)
			delete(kv, "import-from")
			opts := ""
			for _, k := range slices.Sorted(maps.Keys(kv)) {
				opts += "," + k + "=" + kv[k]
			}
			own := fmt.Sprintf("%s:vm-%d-disk-%d", storage, vmid, i)
			f.disks[own] = slices.Clone(f.volumes[kv0(v, "import-from")])
			cfg[disk] = own + opts
		}
	}
	f.vms[vmid] = &VM{Config: cfg}
	return f.newTask("qmcreate", strconv.Itoa(vmid), "OK"), nil
}

func kv0(prop, key string) string {
	_, kv := propertyString(prop)
	return kv[key]
}

// checkDisk checks a disk created from an import volume the way the
// server does: "STORAGE:0" for a drive (size 0), the options import-from
// needs, and a source that exists as import content.
func (f *Fake) checkDisk(form url.Values, key string, need []string, bad map[string]string) {
	v := form.Get(key)
	if v == "" {
		return
	}
	first, kv := propertyString(v)
	src, ok := kv["import-from"]
	if !ok {
		return
	}
	if key == "virtio0" && !strings.HasSuffix(first, ":0") {
		bad[key] = "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"
		return
	}
	for _, n := range need {
		if kv[n] == "" {
			bad[key] = "need to specify '" + n + "' when using 'import-from'"
			return
		}
	}
	if _, ok := f.volumes[src]; !ok {
		bad[key] = "volume '" + src + "' does not exist"
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

func (f *Fake) vm(r *http.Request, id string, rest []string) (any, *apiError) {
	vmid, err := strconv.Atoi(id)
	if err != nil {
		return nil, paramErr(map[string]string{"vmid": "invalid format - value does not look like a valid VM ID"})
	}
	vm, ok := f.vms[vmid]
	if !ok {
		return nil, fail("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", f.Node, vmid)
	}
	switch {
	case len(rest) == 1 && rest[0] == "config" && r.Method == http.MethodGet:
		out := map[string]any{}
		for k, v := range vm.Config {
			out[k] = v
		}
		if n, err := strconv.Atoi(vm.Config["cores"]); err == nil {
			out["cores"] = n // integers come back as numbers
		}
		out["digest"] = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(vm.Config))))[:40]
		return out, nil
	case len(rest) == 2 && rest[0] == "status" && rest[1] == "start" && r.Method == http.MethodPost:
		if vm.Running {
			return nil, fail("VM %d already running", vmid)
		}
		upid := f.newTask("qmstart", id, "OK")
		vm.Running = f.tasks[upid].exit == "OK"
		return upid, nil
	case len(rest) == 2 && rest[0] == "status" && rest[1] == "stop" && r.Method == http.MethodPost:
		vm.Running = false
		return f.newTask("qmstop", id, "OK"), nil
	case len(rest) == 0 && r.Method == http.MethodDelete:
		if vm.Running {
			return nil, fail("VM %d is running - destroy failed", vmid)
		}
		delete(f.vms, vmid)
		for volid := range f.disks {
			if strings.Contains(volid, fmt.Sprintf(":vm-%d-disk-", vmid)) {
				delete(f.disks, volid)
			}
		}
		return f.newTask("qmdestroy", id, "OK"), nil
	}
	return nil, &apiError{status: http.StatusNotImplemented, msg: "Method not implemented"}
}
