package proxmox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// Volume is one entry of GET /nodes/{node}/storage/{storage}/content.
type Volume struct {
	VolID   string `json:"volid"`
	Format  string `json:"format"`
	Size    int64  `json:"size"`
	Content string `json:"content"`
}

// Volumes lists a storage's volumes of one content type ("import").
func (c *Client) Volumes(ctx context.Context, storage, content string) ([]Volume, error) {
	var out []Volume
	err := c.do(ctx, http.MethodGet, c.nodePath("storage", url.PathEscape(storage), "content"), url.Values{"content": {content}}, &out)
	return out, err
}

// DeleteVolume removes a volume (storage:import/name) and waits.
func (c *Client) DeleteVolume(ctx context.Context, storage, volid string) error {
	path := c.nodePath("storage", url.PathEscape(storage), "content", url.PathEscape(volid))
	var upid string
	if err := c.do(ctx, http.MethodDelete, path, nil, &upid); err != nil {
		return err
	}
	if upid == "" { // older servers delete synchronously
		return nil
	}
	return c.WaitTask(ctx, upid)
}

// importNameRE is what Proxmox VE keeps of an uploaded import volume's name.
var importNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+\.(qcow2|raw|vmdk)$`)

// Upload sends the file at path, whose SHA-256 is sum (hex), as import
// content named name to storage and returns its volume ID
// (storage:import/name). Proxmox checks the bytes against sum before it
// keeps them.
func (c *Client) Upload(ctx context.Context, storage, name, path, sum string) (string, error) {
	if !importNameRE.MatchString(name) {
		return "", fmt.Errorf("import volume name %q: want letters, digits, _ . - and a .qcow2, .raw or .vmdk extension", name)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	// pve-http-server refuses a chunked body (501) and needs the length
	// up front: the multipart head and tail are built in memory, the
	// file streamed between them, and the sum of the three sent as
	// Content-Length.
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	// The server's parser reads these fields in this order only, then
	// the file part (named "filename"; its filename is the volume's).
	for _, kv := range [][2]string{{"content", "import"}, {"checksum-algorithm", "sha256"}, {"checksum", sum}} {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			return "", err
		}
	}
	if _, err := mw.CreateFormFile("filename", name); err != nil {
		return "", err
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	size := fi.Size()
	body := io.MultiReader(bytes.NewReader(head.Bytes()), &exactReader{r: f, left: size, path: path}, strings.NewReader(tail))
	apiPath := c.nodePath("storage", url.PathEscape(storage), "upload")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(apiPath).String(), body)
	if err != nil {
		return "", err
	}
	req.ContentLength = int64(head.Len()) + size + int64(len(tail))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var upid string
	if err := c.send(req, apiPath, &upid); err != nil {
		return "", fmt.Errorf("upload %s: %w", path, err)
	}
	if err := c.WaitTask(ctx, upid); err != nil {
		return "", fmt.Errorf("upload %s: %w", path, err)
	}
	return storage + ":import/" + name, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// exactReader reads exactly left bytes of a file whose size was announced
// in Content-Length: a file that grows or shrinks meanwhile fails the
// upload instead of sending other bytes than the checksum covers.
type exactReader struct {
	r    io.Reader
	left int64
	path string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	n, err := e.r.Read(p[:min(int64(len(p)), e.left)])
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		return n, fmt.Errorf("read %s: the file shrank while it was sent", e.path)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("read %s: %w", e.path, err)
	}
	return n, nil
}
