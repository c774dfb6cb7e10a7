package proxmoxtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const token = "kubedos@pve!t=00000000-0000-4000-8000-000000000000"

// call sends one raw request; body nil sends none, a non-nil reader with
// chunked true hides its length.
func call(t *testing.T, f *Fake, method, path, ctype string, body []byte, chunked bool) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // no length known: Go sends it chunked
		}
	}
	req, _ := http.NewRequest(method, f.URL()+path, r)
	req.Header.Set("Authorization", "PVEAPIToken="+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := f.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// multipartBody writes parts in the given order; the last is the file.
func multipartBody(fields [][2]string, fileField string) ([]byte, string) {
	var b bytes.Buffer
	const boundary = "XyZ"
	for _, f := range fields {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n", boundary, f[0], f[1])
	}
	fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"d.raw\"\r\nContent-Type: application/octet-stream\r\n\r\nDATA\r\n--%s--\r\n", boundary, fileField, boundary)
	return b.Bytes(), "multipart/form-data; boundary=" + boundary
}

func TestUploadRefusals(t *testing.T) {
	f := New("pve1", token)
	defer f.Close()
	const sum = "2ab2f2e2b3c03e6c5f9a0a4c8d0e1a4f2f7fb1de0c4e9fa5a6d3c7c2d0e52f3c"
	good := [][2]string{{"content", "import"}, {"checksum-algorithm", "sha256"}, {"checksum", sum}}
	for _, tc := range []struct {
		name    string
		fields  [][2]string
		file    string
		chunked bool
		noBody  bool
		status  int
		want    string
	}{
		{"chunked", good, "filename", true, false, 501, "chunked transfer encoding not supported"},
		{"no Content-Length", nil, "", false, true, 400, "property is missing"},
		{"checksum before its algorithm", [][2]string{good[0], good[2], good[1]}, "filename", false, false, 500, "wrong Content-Disposition"},
		{"unknown field", append([][2]string{{"node", "pve1"}}, good...), "filename", false, false, 500, "wrong Content-Disposition"},
		{"file part misnamed", good, "file", false, false, 500, "wrong field name 'file'"},
		{"in order, checksum checked by the task", good, "filename", false, false, 200, "UPID:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ctype := multipartBody(tc.fields, tc.file)
			if tc.noBody {
				body, ctype = nil, ""
			}
			status, got := call(t, f, http.MethodPost, "/nodes/pve1/storage/local/upload", ctype, body, tc.chunked)
			if status != tc.status || !strings.Contains(got, tc.want) {
				t.Errorf("%d %q, want %d with %q", status, got, tc.status, tc.want)
			}
		})
	}
}

func TestCreateRefusals(t *testing.T) {
	f := New("pve1", token)
	defer f.Close()
	f.volumes["local:import/d.qcow2"] = []byte("disk")
	base := url.Values{"vmid": {"100"}, "virtio0": {"local-lvm:0,import-from=local:import/d.qcow2"}, "net0": {"virtio=52:54:00:00:00:01,bridge=vmbr0"}}
	for _, tc := range []struct {
		name, key, value string
		status           int
		want             string
	}{
		{"size 1 with import-from", "efidisk0", "local-lvm:1,efitype=4m,pre-enrolled-keys=0,import-from=local:import/d.qcow2", 400, "use <storage ID>:0,import-from"},
		{"multicast MAC", "net0", "virtio=01:00:5e:00:00:01,bridge=vmbr0", 400, "unicast MAC"},
		{"unpinned odd machine", "machine", "q35+pve", 400, "machine"},
		{"bad tag", "tags", "a b!", 400, "invalid tag"},
		{"upper-case tag is fine", "tags", "Zeta;alpha", 200, "UPID:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range base {
				form[k] = v
			}
			form.Set(tc.key, tc.value)
			status, got := call(t, f, http.MethodPost, "/nodes/pve1/qemu", "application/x-www-form-urlencoded", []byte(form.Encode()), false)
			if status != tc.status || !strings.Contains(got, tc.want) {
				t.Errorf("%d %q, want %d with %q", status, got, tc.status, tc.want)
			}
		})
	}
	if vm, _ := f.VM(100); vm.Config["tags"] != "alpha;zeta" {
		t.Errorf("tags stored as %q, want lower-cased and sorted", vm.Config["tags"])
	}
}

func TestPermissionsAndVisibility(t *testing.T) {
	f := New("pve1", token)
	defer f.Close()
	f.AddVMOn("pve2", 300, map[string]string{"name": "other"}, true)
	f.AddVM(301, map[string]string{"name": "hidden"}, false)
	f.Deny("/vms/301", "VM.Audit")
	f.Deny("/storage", "Datastore.Allocate")
	_, body := call(t, f, http.MethodGet, "/cluster/resources?type=vm", "", nil, false)
	var res struct{ Data []map[string]any }
	_ = json.Unmarshal([]byte(body), &res)
	if len(res.Data) != 1 || res.Data[0]["node"] != "pve2" {
		t.Errorf("resources %v: want pve2's VM and not the one the token may not audit", res.Data)
	}
	status, body := call(t, f, http.MethodDelete, "/nodes/pve1/storage/local/content/"+url.PathEscape("local:import/x.raw"), "", nil, false)
	if status != 403 || !strings.Contains(body, "Permission check failed (/storage/local, Datastore.Allocate)") {
		t.Errorf("delete without Datastore.Allocate (denied on /storage, inherited): %d %s", status, body)
	}
	_, body = call(t, f, http.MethodGet, "/access/permissions?path=/storage/local", "", nil, false)
	if strings.Contains(body, `"Datastore.Allocate"`) || !strings.Contains(body, `"Datastore.AllocateTemplate"`) {
		t.Errorf("permissions %s", body)
	}
}
