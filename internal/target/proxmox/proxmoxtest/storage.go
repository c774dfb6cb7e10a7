package proxmoxtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
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
	switch {
	case len(rest) == 1 && rest[0] == "content" && r.Method == http.MethodGet:
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
