// Package proxmoxtest is a stand-in for a Proxmox VE node's HTTP API, for
// tests: no Proxmox server runs here. It follows the API's documented
// shapes (answers in {"data": …}; 400 "Parameter verification failed."
// with per-parameter "errors"; 500 for other failures; 401 with no JSON
// body for a bad token; tasks named by UPIDs that run before they stop) and
// checks what the real server checks of the calls kubedos makes.
package proxmoxtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Fake is one Proxmox VE node.
type Fake struct {
	Server *httptest.Server
	Node   string
	Token  string // USER@REALM!TOKENID=SECRET
	// Release is what /version reports ("8.4").
	Release string
	// ImportStorages may hold import content (file-based); other storages
	// hold VM disks only.
	ImportStorages []string

	mu      sync.Mutex
	vms     map[int]*VM
	volumes map[string][]byte // volid → bytes
	// disks are the VMs' own volumes, copied from import volumes.
	disks map[string][]byte
	tasks map[string]*task
	seq   int
	// Calls records "METHOD path" of every authenticated call.
	Calls []string
	// FailTasks makes tasks of a type (qmstart, qmcreate, …) end with
	// that exit status.
	FailTasks map[string]string
}

// VM is a VM the fake holds.
type VM struct {
	Config  map[string]string
	Running bool
}

type task struct {
	typ, exit string
	polls     int // status reads left before it stops
}

// New starts a fake node named node that accepts token.
func New(node, token string) *Fake {
	f := &Fake{Node: node, Token: token, Release: "8.4", ImportStorages: []string{"local"},
		vms: map[int]*VM{}, volumes: map[string][]byte{}, disks: map[string][]byte{}, tasks: map[string]*task{}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	// Refused handshakes are what some tests are about, not noise.
	f.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.Server.StartTLS()
	return f
}

// URL is the API's base (…/api2/json).
func (f *Fake) URL() string { return f.Server.URL + "/api2/json" }

// Fingerprint is the SHA-256 of the server's certificate.
func (f *Fake) Fingerprint() []byte {
	sum := sha256.Sum256(f.Server.Certificate().Raw)
	return sum[:]
}

// Close stops the server.
func (f *Fake) Close() { f.Server.Close() }

// CallsMatching returns the recorded calls that start with prefix.
func (f *Fake) CallsMatching(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.Calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// VM returns a copy of a VM's state.
func (f *Fake) VM(vmid int) (VM, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm, ok := f.vms[vmid]
	if !ok {
		return VM{}, false
	}
	cfg := map[string]string{}
	for k, v := range vm.Config {
		cfg[k] = v
	}
	return VM{Config: cfg, Running: vm.Running}, true
}

// Volume returns an import volume's bytes.
func (f *Fake) Volume(volid string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.volumes[volid]
	return b, ok
}

// Disk returns the bytes of a VM's volume as its config names it
// ("local-lvm:vm-100-disk-0,efitype=4m,…"): what the VM boots from.
func (f *Fake) Disk(config string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	volid, _, _ := strings.Cut(config, ",")
	b, ok := f.disks[volid]
	return b, ok
}

// AddVM puts a VM there as if someone else had made it.
func (f *Fake) AddVM(vmid int, cfg map[string]string, running bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid] = &VM{Config: cfg, Running: running}
}

// apiError is an error answer.
type apiError struct {
	status int
	msg    string
	params map[string]string
}

func paramErr(params map[string]string) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: "Parameter verification failed.", params: params}
}

func fail(format string, args ...any) *apiError {
	return &apiError{status: http.StatusInternalServerError, msg: fmt.Sprintf(format, args...)}
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "PVEAPIToken="+f.Token {
		// The real server answers a bad token with 401, the reason in the
		// status line and no JSON body.
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	// Split the escaped path: a volume ID in it (local:import%2Fx.raw) is
	// one segment.
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api2/json")
	if !ok {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		parts[i], _ = url.PathUnescape(p)
	}
	f.mu.Lock()
	f.Calls = append(f.Calls, r.Method+" "+path)
	f.mu.Unlock()
	data, aerr := f.route(r, parts)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	if aerr != nil {
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]any{"data": nil, "message": aerr.msg + "\n", "errors": aerr.params})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (f *Fake) route(r *http.Request, p []string) (any, *apiError) {
	if len(p) == 1 && p[0] == "version" && r.Method == http.MethodGet {
		return map[string]string{"version": f.Release + ".1", "release": f.Release, "repoid": "2a5fa54a8503f96d"}, nil
	}
	if len(p) < 3 || p[0] != "nodes" {
		return nil, &apiError{status: http.StatusNotImplemented, msg: "Method '" + r.Method + " /" + strings.Join(p, "/") + "' not implemented"}
	}
	if p[1] != f.Node {
		return nil, fail("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", p[1], p[1])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch rest := p[2:]; {
	case rest[0] == "tasks" && len(rest) == 3 && rest[2] == "status":
		return f.taskStatus(rest[1])
	case rest[0] == "qemu" && len(rest) == 1 && r.Method == http.MethodGet:
		return f.list(), nil
	case rest[0] == "qemu" && len(rest) == 1 && r.Method == http.MethodPost:
		if err := r.ParseForm(); err != nil {
			return nil, paramErr(map[string]string{"body": err.Error()})
		}
		return f.create(r.PostForm)
	case rest[0] == "qemu" && len(rest) >= 2:
		return f.vm(r, rest[1], rest[2:])
	case rest[0] == "storage" && len(rest) >= 3:
		return f.storage(r, rest[1], rest[2:])
	}
	return nil, &apiError{status: http.StatusNotImplemented, msg: "Method '" + r.Method + " /" + strings.Join(p, "/") + "' not implemented"}
}

func (f *Fake) newTask(typ, id, exit string) string {
	f.seq++
	if msg, ok := f.FailTasks[typ]; ok {
		exit = msg
	}
	upid := fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", f.Node, 4000+f.seq, 100000+f.seq, 1764500000+f.seq, typ, id, strings.SplitN(f.Token, "=", 2)[0])
	f.tasks[upid] = &task{typ: typ, exit: exit, polls: 1}
	return upid
}

func (f *Fake) taskStatus(upid string) (any, *apiError) {
	t, ok := f.tasks[upid]
	if !ok {
		return nil, paramErr(map[string]string{"upid": "no such task"})
	}
	st := map[string]any{"upid": upid, "type": t.typ, "node": f.Node, "status": "running"}
	if t.polls > 0 {
		t.polls--
		return st, nil
	}
	st["status"], st["exitstatus"] = "stopped", t.exit
	return st, nil
}

func (f *Fake) list() []map[string]any {
	out := []map[string]any{}
	ids := make([]int, 0, len(f.vms))
	for id := range f.vms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
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
			for _, k := range slices.Sorted(mapKeys(kv)) {
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

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
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

var uploadNameRE = regexp.MustCompile(`\.(qcow2|raw|vmdk|ova)$`)

func (f *Fake) storage(r *http.Request, storage string, rest []string) (any, *apiError) {
	importable := slices.Contains(f.ImportStorages, storage)
	switch {
	case len(rest) == 1 && rest[0] == "content" && r.Method == http.MethodGet:
		out := []map[string]any{}
		if r.URL.Query().Get("content") != "import" || !importable {
			return out, nil
		}
		for _, volid := range slices.Sorted(func(yield func(string) bool) {
			for k := range f.volumes {
				if !yield(k) {
					return
				}
			}
		}) {
			if strings.HasPrefix(volid, storage+":import/") {
				out = append(out, map[string]any{"volid": volid, "content": "import", "size": len(f.volumes[volid]),
					"format": strings.TrimPrefix(uploadNameRE.FindString(volid), ".")})
			}
		}
		return out, nil
	case len(rest) == 2 && rest[0] == "content" && r.Method == http.MethodDelete:
		volid := rest[1]
		if _, ok := f.volumes[volid]; !ok {
			return nil, fail("volume '%s' does not exist", volid)
		}
		delete(f.volumes, volid)
		return f.newTask("imgdel", volid, "OK"), nil
	case len(rest) == 1 && rest[0] == "upload" && r.Method == http.MethodPost:
		return f.upload(r, storage, importable)
	}
	return nil, &apiError{status: http.StatusNotImplemented, msg: "Method not implemented"}
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

func (f *Fake) upload(r *http.Request, storage string, importable bool) (any, *apiError) {
	// The lock is held: an upload is read whole before it is answered.
	if err := r.ParseMultipartForm(64 << 20); err != nil {
		return nil, paramErr(map[string]string{"filename": err.Error()})
	}
	content := r.FormValue("content")
	if content != "iso" && content != "vztmpl" && content != "import" {
		return nil, paramErr(map[string]string{"content": "value '" + content + "' does not have a value in the enumeration 'iso, vztmpl, import'"})
	}
	if content == "import" && !importable {
		return nil, fail("storage '%s' does not support upload of this content type", storage)
	}
	sum, algo := r.FormValue("checksum"), r.FormValue("checksum-algorithm")
	if (sum == "") != (algo == "") {
		return nil, paramErr(map[string]string{"checksum": "checksum and checksum-algorithm go together"})
	}
	file, hdr, err := r.FormFile("filename")
	if err != nil {
		return nil, paramErr(map[string]string{"filename": "missing file part 'filename'"})
	}
	defer file.Close()
	data, err := io.ReadAll(file)
	if err != nil {
		return nil, fail("upload: %v", err)
	}
	name := unsafeName.ReplaceAllString(hdr.Filename[strings.LastIndexAny(hdr.Filename, `/\`)+1:], "_")
	if content == "import" && !uploadNameRE.MatchString(name) {
		return nil, paramErr(map[string]string{"filename": "invalid filename or wrong extension"})
	}
	// The checksum is checked by the task, which fails on a mismatch.
	if algo != "" {
		if algo != "sha256" {
			return f.newTask("imgcopy", "", "unsupported checksum algorithm in this fake: "+algo), nil
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != strings.ToLower(sum) {
			return f.newTask("imgcopy", "", fmt.Sprintf("checksum mismatch: got '%x' != expect '%s'", got, sum)), nil
		}
	}
	f.volumes[storage+":"+content+"/"+name] = data
	return f.newTask("imgcopy", "", "OK"), nil
}
