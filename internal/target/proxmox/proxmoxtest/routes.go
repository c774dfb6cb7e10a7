package proxmoxtest

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Routing, tasks and the cluster-wide resource list.

func (f *Fake) route(r *http.Request, p []string) (any, *apiError) {
	if len(p) == 1 && p[0] == "version" && r.Method == http.MethodGet {
		return map[string]string{"version": f.Release + ".1", "release": f.Release, "repoid": "2a5fa54a8503f96d"}, nil
	}
	if len(p) == 2 && p[0] == "cluster" && p[1] == "resources" && r.Method == http.MethodGet {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.resources(r.URL.Query().Get("type")), nil
	}
	if len(p) == 2 && p[0] == "access" && p[1] == "permissions" && r.Method == http.MethodGet {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.permissions(r.URL.Query().Get("path")), nil
	}
	if len(p) < 3 || p[0] != "nodes" {
		return nil, notImplemented(r, p)
	}
	if p[1] != f.Node {
		// Requests are proxied to the named node; only the API's node is
		// served here.
		return nil, fail("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", p[1], p[1])
	}
	if !(len(p) == 5 && p[2] == "storage" && p[4] == "upload") && r.ContentLength > 0 {
		if err := r.ParseForm(); err != nil {
			return nil, paramErr(map[string]string{"body": err.Error()})
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch rest := p[2:]; {
	case rest[0] == "tasks" && len(rest) == 3 && rest[2] == "status":
		return f.taskStatus(rest[1])
	case rest[0] == "qemu" && len(rest) == 1 && r.Method == http.MethodGet:
		return f.list(), nil
	case rest[0] == "qemu" && len(rest) == 1 && r.Method == http.MethodPost:
		return f.create(r.PostForm)
	case rest[0] == "qemu" && len(rest) >= 2:
		return f.vm(r, rest[1], rest[2:])
	case rest[0] == "storage" && len(rest) >= 3:
		return f.storage(r, rest[1], rest[2:])
	}
	return nil, notImplemented(r, p)
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

func status(vm *VM) string {
	if vm.Running {
		return "running"
	}
	return "stopped"
}

// list is GET /nodes/{node}/qemu: the node's VMs the token may audit.
func (f *Fake) list() []map[string]any {
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(f.vms)) {
		vm := f.vms[id]
		if vm.Node != f.Node || !f.can("/vms/"+strconv.Itoa(id), "VM.Audit") {
			continue
		}
		e := map[string]any{"vmid": id, "name": vm.Config["name"], "status": status(vm)}
		if t := vm.Config["tags"]; t != "" {
			e["tags"] = t
		}
		out = append(out, e)
	}
	return out
}

// resources is GET /cluster/resources: every node's guests, but only those
// the token may audit (pve-manager skips the others without a word).
func (f *Fake) resources(typ string) []map[string]any {
	out := []map[string]any{}
	if typ == "" || typ == "node" {
		out = append(out, map[string]any{"id": "node/" + f.Node, "type": "node", "node": f.Node, "status": "online"})
	}
	if typ != "" && typ != "vm" {
		return out
	}
	for _, id := range slices.Sorted(maps.Keys(f.vms)) {
		vm := f.vms[id]
		if !f.can("/vms/"+strconv.Itoa(id), "VM.Audit") {
			continue
		}
		e := map[string]any{"id": "qemu/" + strconv.Itoa(id), "type": "qemu", "vmid": id, "node": vm.Node,
			"name": vm.Config["name"], "status": status(vm)}
		if t := vm.Config["tags"]; t != "" {
			e["tags"] = t
		}
		out = append(out, e)
	}
	return out
}

// privileges are Proxmox VE's built-in privileges the calls here can need.
var privileges = []string{"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
	"SDN.Use", "Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
	"VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
	"VM.GuestAgent.Audit", "VM.Monitor", "VM.PowerMgmt"}

// permissions is GET /access/permissions?path=…: the token's own
// privileges on path (all of them but what Deny took away).
func (f *Fake) permissions(path string) map[string]map[string]int {
	if path == "" {
		path = "/"
	}
	have := map[string]int{}
	for _, p := range privileges {
		if f.can(path, p) {
			have[p] = 1
		}
	}
	return map[string]map[string]int{path: have}
}
