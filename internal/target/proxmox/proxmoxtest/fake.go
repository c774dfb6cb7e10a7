// Package proxmoxtest is a stand-in for a Proxmox VE cluster's HTTP API, for
// tests: no Proxmox server runs here. It follows the API's shapes (answers
// in {"data": …}; 400 "Parameter verification failed." with per-parameter
// "errors"; 403 "Permission check failed (path, privilege)"; 500 for other
// failures; 401 with no JSON body for a bad token; tasks named by UPIDs that
// run before they stop) and refuses what the real server refuses of the
// calls kubedos makes, as read in Proxmox VE's sources (pve-http-server,
// pve-storage, qemu-server, pve-manager, pve-common; see docs/proxmox.md).
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

// Fake is a Proxmox VE cluster whose API answers on node Node; VMs of other
// nodes (AddVMOn) show cluster-wide.
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
	// disks are the VMs' own volumes, copied from import volumes, and
	// sizes their sizes as the VM sees them.
	disks  map[string][]byte
	sizes  map[string]int64
	tasks  map[string]*task
	seq    int
	denied map[string]bool // "privilege path"
	// uploaded counts the file bytes of accepted uploads.
	uploaded int64
	// Calls records "METHOD path" of every authenticated call.
	Calls []string
	// FailTasks makes tasks of a type (qmstart, qmcreate, …) end with
	// that exit status.
	FailTasks map[string]string
}

// VM is a VM the fake holds.
type VM struct {
	Node    string
	Config  map[string]string
	Running bool
	// Agent is what the guest agent reports as the guest's interfaces;
	// nil: no agent answers (not started, or no virtio-serial channel).
	Agent []Interface
}

// Interface is one guest interface as qemu-guest-agent reports it.
type Interface struct {
	Name        string   `json:"name"`
	MAC         string   `json:"hardware-address"`
	IPAddresses []IPAddr `json:"ip-addresses,omitempty"`
}

// IPAddr is one address of a guest interface.
type IPAddr struct {
	Address string `json:"ip-address"`
	Type    string `json:"ip-address-type"` // ipv4 | ipv6
	Prefix  int    `json:"prefix"`
}

type task struct {
	typ, exit string
	polls     int // status reads left before it stops
}

// New starts a fake cluster whose API node is node and accepts token.
func New(node, token string) *Fake {
	f := &Fake{Node: node, Token: token, Release: "8.4", ImportStorages: []string{"local"},
		vms: map[int]*VM{}, volumes: map[string][]byte{}, disks: map[string][]byte{}, sizes: map[string]int64{},
		tasks: map[string]*task{}, denied: map[string]bool{}}
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

// Deny takes privilege priv on ACL path (and, as ACLs propagate, below it)
// from the token: "/storage/local", "Datastore.Allocate".
func (f *Fake) Deny(path, priv string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denied[priv+" "+path] = true
}

// can reports whether the token holds priv on path.
func (f *Fake) can(path, priv string) bool {
	for p := path; ; {
		if f.denied[priv+" "+p] {
			return false
		}
		if p == "/" {
			return true
		}
		p = p[:strings.LastIndex(p, "/")]
		if p == "" {
			p = "/"
		}
	}
}

// check is rpcenv->check: 403 naming the path and privilege(s) unless the
// token holds one of privs on path.
func (f *Fake) check(path string, privs ...string) *apiError {
	for _, p := range privs {
		if f.can(path, p) {
			return nil
		}
	}
	return &apiError{status: http.StatusForbidden, msg: "Permission check failed (" + path + ", " + strings.Join(privs, "|") + ")"}
}

// UploadedBytes is the sum of the file parts of every accepted upload.
func (f *Fake) UploadedBytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploaded
}

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
	return VM{Node: vm.Node, Config: cfg, Running: vm.Running, Agent: vm.Agent}, true
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

// AddVM puts a VM on the API's node as if someone else had made it.
func (f *Fake) AddVM(vmid int, cfg map[string]string, running bool) {
	f.AddVMOn(f.Node, vmid, cfg, running)
}

// AddVMOn puts a VM on another node of the cluster.
func (f *Fake) AddVMOn(node string, vmid int, cfg map[string]string, running bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[vmid] = &VM{Node: node, Config: cfg, Running: running}
}

// SetAgent makes the guest agent of a VM answer with ifaces (nil: stop it).
func (f *Fake) SetAgent(vmid int, ifaces []Interface) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm, ok := f.vms[vmid]; ok {
		vm.Agent = ifaces
	}
}

// apiError is an error answer.
type apiError struct {
	status int
	msg    string
	params map[string]string
	// plain answers as pve-http-server's own errors do: the message in
	// the status line and as a text body, no JSON.
	plain bool
}

func paramErr(params map[string]string) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: "Parameter verification failed.", params: params}
}

func fail(format string, args ...any) *apiError {
	return &apiError{status: http.StatusInternalServerError, msg: fmt.Sprintf(format, args...)}
}

func notImplemented(r *http.Request, p []string) *apiError {
	return &apiError{status: http.StatusNotImplemented, msg: "Method '" + r.Method + " /" + strings.Join(p, "/") + "' not implemented"}
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	// pve-http-server refuses a chunked (or any encoded) body before it
	// looks at the request: it must know the length up front.
	if len(r.TransferEncoding) > 0 {
		msg := "Unknown transfer encoding '" + strings.Join(r.TransferEncoding, ",") + "'"
		if r.TransferEncoding[0] == "chunked" {
			msg = "chunked transfer encoding not supported"
		}
		writeErr(w, &apiError{status: http.StatusNotImplemented, msg: msg, plain: true})
		return
	}
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
	if aerr != nil {
		writeErr(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = jsonEncoder(w).Encode(map[string]any{"data": data})
}

// jsonEncoder writes JSON as Perl's JSON does: no HTML escaping.
func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

func writeErr(w http.ResponseWriter, e *apiError) {
	if e.plain {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(e.status)
		_, _ = io.WriteString(w, e.msg)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(e.status)
	_ = jsonEncoder(w).Encode(map[string]any{"data": nil, "message": e.msg + "\n", "errors": e.params})
}
