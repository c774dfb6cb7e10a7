package proxmox

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
)

// uploader sends each local file once, named by its content.
type uploader struct {
	c       *Client
	storage string
	step    func(string, ...any)
	have    map[string]bool
	// sums caches each file's SHA-256: nodes of one role share an image,
	// and hashing 100 MiB per node would be the deploy's largest cost.
	sums map[string]string
}

// list reads the storage's import volumes once per deploy.
func (u *uploader) list(ctx context.Context) error {
	if u.have != nil {
		return nil
	}
	vols, err := u.c.Volumes(ctx, u.storage, "import")
	if err != nil {
		return err
	}
	u.have = map[string]bool{}
	for _, v := range vols {
		u.have[v.VolID] = true
	}
	return nil
}

func (u *uploader) ensure(ctx context.Context, path, prefix, ext string) (string, error) {
	sum, ok := u.sums[path]
	if !ok {
		var err error
		if sum, err = fileSHA256(path); err != nil {
			return "", err
		}
		if u.sums == nil {
			u.sums = map[string]string{}
		}
		u.sums[path] = sum
	}
	name := prefix + "-" + sum[:32] + ext
	volid := u.storage + ":import/" + name
	if err := u.list(ctx); err != nil {
		return "", err
	}
	if u.have[volid] {
		return volid, nil
	}
	u.step("uploading %s to %s as %s", filepath.Base(path), u.storage, name)
	if _, err := u.c.Upload(ctx, u.storage, name, path, sum); err != nil {
		return "", err
	}
	u.have[volid] = true
	return volid, nil
}

// virtualSize is the size a VM sees of an image: a qcow2's from its
// header (big-endian at byte 24), else the file's.
func virtualSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr [32]byte
	if n, _ := io.ReadFull(f, hdr[:]); n == len(hdr) && string(hdr[:4]) == "QFI\xfb" {
		return int64(binary.BigEndian.Uint64(hdr[24:])), nil
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
