package proxmoxtest

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
)

// uploadFields are the only fields pve-http-server's upload parser reads,
// in the only order it reads them (then the file part, named "filename").
// It takes each with a pattern anchored at the current part: a field that
// comes later than its turn is matched across the parts before it, and the
// server fails on the Content-Disposition it captured.
var uploadFields = []string{"content", "checksum-algorithm", "checksum"}

type part struct{ name, value string }

// readUpload parses a multipart upload the way pve-http-server does (see
// file_upload_multipart in PVE/APIServer/AnyEvent.pm).
func readUpload(r *http.Request) (fields map[string]string, filename string, data []byte, aerr *apiError) {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" || params["boundary"] == "" {
		return nil, "", nil, fail("upload 'Content-Type '%s' not implemented", r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(io.LimitReader(r.Body, r.ContentLength), params["boundary"])
	var before []part
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			// The body ended before a file part: the parser never left
			// phase 1.
			return nil, "", nil, fail("upload failed")
		}
		if err != nil {
			return nil, "", nil, fail("upload failed")
		}
		disp, dp, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if _, isFile := dp["filename"]; isFile {
			if fields, aerr = orderedFields(before); aerr != nil {
				return nil, "", nil, aerr
			}
			if disp != "form-data" {
				return nil, "", nil, fail("wrong Content-Disposition '%s' in multipart, expected 'form-data'", disp)
			}
			if dp["name"] != "filename" {
				return nil, "", nil, fail("wrong field name '%s' for file upload, expected 'filename'", dp["name"])
			}
			if data, err = io.ReadAll(p); err != nil {
				return nil, "", nil, fail("upload failed")
			}
			return fields, dp["filename"], data, nil
		}
		v, _ := io.ReadAll(io.LimitReader(p, 4096))
		before = append(before, part{dp["name"], strings.TrimSpace(string(v))})
	}
}

// orderedFields takes the parts before the file as the server does: each
// of uploadFields in turn, only when it is the next part.
func orderedFields(parts []part) (map[string]string, *apiError) {
	fields := map[string]string{}
	i := 0
	for _, want := range uploadFields {
		at := slices.IndexFunc(parts[i:], func(p part) bool { return p.name == want })
		switch {
		case at < 0:
			continue
		case at > 0:
			// The pattern spans the parts in between; what it captures as
			// the disposition is more than 'form-data'.
			return nil, fail("wrong Content-Disposition 'form-data; name=\"%s\"…' in multipart, expected 'form-data'", parts[i].name)
		}
		fields[want] = parts[i].value
		i++
	}
	if i < len(parts) {
		// An unknown field stays in front of the file part: the file part
		// is never found.
		return nil, fail("upload failed")
	}
	return fields, nil
}
