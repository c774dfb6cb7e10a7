// Package proxmoxtest is a stand-in for a Proxmox VE node's HTTP API, for
// tests: no Proxmox server runs here. It follows the API's documented
// shapes (answers in {"data": …}; 400 "Parameter verification failed."
// with per-parameter "errors"; 500 for other failures; 401 with no JSON
// body for a bad token; tasks named by UPIDs that run before they stop) and
// checks what the real server checks of the calls kubedos makes.
package proxmoxtest

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
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
