package lock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/durable"
)

// cache is a content-addressed store of .deb files: sha256/<hex>.deb. A
// file only ever gets its name after its content matched that name.
type cache struct {
	dir    string
	client *http.Client
}

func newCache(dir string, client *http.Client) *cache {
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// A mirror copied onto local disk (file:///srv/debian) is a real
		// dark-site case; serve it through the same verified path.
		t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
		client = &http.Client{Transport: t}
	}
	return &cache{dir: dir, client: client}
}

func (c *cache) init() error {
	if err := os.MkdirAll(filepath.Join(c.dir, "sha256"), 0o755); err != nil {
		return fmt.Errorf("lock: cache: %w", err)
	}
	return nil
}

func (c *cache) path(sum string) string { return filepath.Join(c.dir, "sha256", sum+".deb") }

// get makes sure p is in the cache. A file already there is re-verified
// (disks rot, people copy caches around) and replaced if it is wrong.
func (c *cache) get(ctx context.Context, mirror string, p Package) (cached bool, err error) {
	dst := c.path(p.SHA256)
	f, err := os.Open(dst)
	switch {
	case err == nil:
		verr := verify(f, p)
		f.Close()
		if verr == nil {
			return true, nil
		}
		if err := os.Remove(dst); err != nil {
			return false, fmt.Errorf("package %s: remove corrupt cache file %s: %w", p.Name, dst, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("package %s: %w", p.Name, err)
	}
	return false, c.download(ctx, mirror, p, dst)
}

func (c *cache) download(ctx context.Context, mirror string, p Package, dst string) error {
	u, err := url.JoinPath(mirror, p.Filename)
	if err != nil {
		return fmt.Errorf("package %s: %w", p.Name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("package %s: %w", p.Name, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("package %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("package %s: GET %s: %s", p.Name, u, resp.Status)
	}
	// Read one byte past the locked size so an oversized file is caught
	// without reading an unbounded body; a file that does not match the
	// lock is never placed.
	return durable.WriteFrom(dst, 0o644, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(resp.Body, p.Size+1))
		if err != nil {
			return fmt.Errorf("package %s: GET %s: %w", p.Name, u, err)
		}
		if err := matches(p, n, h.Sum(nil)); err != nil {
			return fmt.Errorf("package %s from %s: %w", p.Name, u, err)
		}
		return nil
	})
}

// verify checks a cached file against the lock.
func verify(r io.Reader, p Package) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, p.Size+1))
	if err != nil {
		return err
	}
	return matches(p, n, h.Sum(nil))
}

func matches(p Package, n int64, sum []byte) error {
	if n != p.Size {
		return fmt.Errorf("%w: got %d bytes, locked %d", ErrDigestMismatch, n, p.Size)
	}
	if got := hex.EncodeToString(sum); got != p.SHA256 {
		return fmt.Errorf("%w: got sha256 %s, locked %s", ErrDigestMismatch, got, p.SHA256)
	}
	return nil
}
