package proxmoxtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Storage: import content listing, deletion and upload.

var uploadNameRE = regexp.MustCompile(`\.(qcow2|raw|vmdk|ova)$`)

func (f *Fake) storage(r *http.Request, storage string, rest []string) (any, *apiError) {
	importable := slices.Contains(f.ImportStorages, storage)
	acl := "/storage/" + storage
	switch {
	case len(rest) == 1 && rest[0] == "content" && r.Method == http.MethodGet:
		if err := f.check(acl, "Datastore.Audit", "Datastore.AllocateSpace"); err != nil {
			return nil, err
		}
		out := []map[string]any{}
		if r.URL.Query().Get("content") != "import" || !importable {
			return out, nil
		}
		for _, volid := range slices.Sorted(maps.Keys(f.volumes)) {
			if strings.HasPrefix(volid, storage+":import/") {
				out = append(out, map[string]any{"volid": volid, "content": "import", "size": len(f.volumes[volid]),
					"format": strings.TrimPrefix(uploadNameRE.FindString(volid), ".")})
			}
		}
		return out, nil
	case len(rest) == 2 && rest[0] == "content" && r.Method == http.MethodDelete:
		// Any volume but a VM's backup needs Datastore.Allocate.
		if err := f.check(acl, "Datastore.Allocate"); err != nil {
			return nil, err
		}
		volid := rest[1]
		if _, ok := f.volumes[volid]; !ok {
			return nil, fail("volume '%s' does not exist", volid)
		}
		delete(f.volumes, volid)
		return f.newTask("imgdel", storage, "OK"), nil
	case len(rest) == 1 && rest[0] == "upload" && r.Method == http.MethodPost:
		return f.upload(r, storage, importable)
	}
	return nil, &apiError{status: http.StatusNotImplemented, msg: "Method not implemented"}
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

func (f *Fake) upload(r *http.Request, storage string, importable bool) (any, *apiError) {
	// The lock is held: an upload is read whole before it is answered.
	if r.ContentLength <= 0 {
		// Without a length pve-http-server does not take the upload path:
		// the call arrives with no parameters at all.
		return nil, paramErr(map[string]string{"content": "property is missing and it is not optional",
			"filename": "property is missing and it is not optional"})
	}
	fields, name, data, aerr := readUpload(r)
	if aerr != nil {
		return nil, aerr
	}
	if err := f.check("/storage/"+storage, "Datastore.AllocateTemplate"); err != nil {
		return nil, err
	}
	content := fields["content"]
	if content != "iso" && content != "vztmpl" && content != "import" {
		return nil, paramErr(map[string]string{"content": "value '" + content + "' does not have a value in the enumeration 'iso, vztmpl, import'"})
	}
	if content == "import" && !importable {
		return nil, fail("storage '%s' does not support '%s' content", storage, content)
	}
	sum, algo := fields["checksum"], fields["checksum-algorithm"]
	if sum != "" && algo == "" {
		return nil, paramErr(map[string]string{"checksum": "parameter 'checksum' requires parameter 'checksum-algorithm'"})
	}
	if algo != "" && sum == "" {
		return nil, paramErr(map[string]string{"checksum-algorithm": "parameter 'checksum-algorithm' requires parameter 'checksum'"})
	}
	name = unsafeName.ReplaceAllString(name[strings.LastIndexAny(name, `/\`)+1:], "_")
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
	f.uploaded += int64(len(data))
	return f.newTask("imgcopy", "", "OK"), nil
}
