package proxmox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"regexp"
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
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			for _, kv := range [][2]string{{"content", "import"}, {"checksum", sum}, {"checksum-algorithm", "sha256"}} {
				if err := mw.WriteField(kv[0], kv[1]); err != nil {
					return err
				}
			}
			// The file part is named "filename"; its filename is the volume's.
			part, err := mw.CreateFormFile("filename", name)
			if err != nil {
				return err
			}
			if _, err := io.Copy(part, f); err != nil {
				return fmt.Errorf("read %s: %w", path, err)
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	apiPath := c.nodePath("storage", url.PathEscape(storage), "upload")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(apiPath).String(), pr)
	if err != nil {
		pr.Close()
		return "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var upid string
	if err := c.send(req, apiPath, &upid); err != nil {
		pr.CloseWithError(err)
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
