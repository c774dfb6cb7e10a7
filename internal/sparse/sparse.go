// Package sparse finds the data in a sparse file, so that the build reads
// only the bytes a file holds and not its holes: a role's raw disk is
// 0.8–1.1 GB of which a tenth is data, and reading its holes had the
// kernel zero 8 GB of page cache for the reference's eight roles (a fifth
// of the build's CPU).
package sparse

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Extent is a run of a file that may hold data; everything outside a
// file's extents reads as zeros.
type Extent struct{ Off, Len int64 }

// Extents lists the data of f within its first size bytes, in order, by
// SEEK_DATA and SEEK_HOLE. Where the filesystem cannot tell, the whole
// range is one extent: correct, only slower to read.
func Extents(f *os.File, size int64) ([]Extent, error) {
	whole := []Extent{{0, size}}
	if size <= 0 {
		return nil, nil
	}
	fd := int(f.Fd())
	var out []Extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from off to the end
		}
		if err != nil {
			return whole, nil // SEEK_DATA unsupported here
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return whole, nil
		}
		hole = min(hole, size)
		out = append(out, Extent{data, hole - data})
		off = hole
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("sparse: rewind %s: %w", f.Name(), err)
	}
	return out, nil
}

var zeros [1 << 20]byte

// Digest is the sha256 (hex) and size of the file at path, reading only
// its data: holes are hashed as the zeros they read as.
func Digest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	exts, err := Extents(f, st.Size())
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	pos := int64(0)
	for _, e := range append(exts, Extent{st.Size(), 0}) {
		for pos < e.Off {
			n := min(e.Off-pos, int64(len(zeros)))
			h.Write(zeros[:n])
			pos += n
		}
		if e.Len == 0 {
			continue
		}
		n, err := io.Copy(h, io.NewSectionReader(f, e.Off, e.Len))
		if err != nil {
			return "", 0, fmt.Errorf("hash %s: %w", path, err)
		}
		if n != e.Len {
			return "", 0, fmt.Errorf("hash %s: %d bytes at %d, want %d (changed while read)", path, n, e.Off, e.Len)
		}
		pos += n
	}
	return hex.EncodeToString(h.Sum(nil)), pos, nil
}
