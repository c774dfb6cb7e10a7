package earlyboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kubedos/kubedos/internal/sparse"
)

// The state filesystem is made at build time (mkfs.ext4 with lazy inode
// table and journal initialisation, so only its metadata is written) and
// carried in the initrd as the runs of its 4 KiB blocks that are not all
// zero. At first boot kubedos-init writes those runs through the fresh
// crypt mapping: a few hundred KiB of writes instead of a whole partition,
// and no mkfs in the initrd. The blocks never written decrypt to noise,
// which ext4 tolerates where mkfs's lazy options left them unwritten
// (TestSparseStateFSChecks runs e2fsck over exactly that).
//
// Format: magic "KDSPARS1", u64 image size, u32 run count, then per run
// u64 offset, u32 length and the bytes; little-endian, runs in increasing
// order, every number a multiple of 4 KiB. The build writes it and the
// initrd carries it inside the signed UKI; it is parsed strictly anyway.

const (
	sparseMagic = "KDSPARS1"
	sparseBlock = 4096
)

// StateFSFile and DataFSFile are the sparse state and data filesystems
// inside the initrd.
const (
	StateFSFile = "/etc/kubedos/state.fs"
	DataFSFile  = "/etc/kubedos/data.fs"
)

// ErrSparseImage means a sparse image is malformed.
var ErrSparseImage = errors.New("bad sparse image")

// EncodeSparse reads an image of size bytes (a multiple of 4 KiB) and
// returns its non-zero 4 KiB blocks in the sparse format.
func EncodeSparse(img io.ReaderAt, size int64) ([]byte, error) {
	if size <= 0 || size%sparseBlock != 0 {
		return nil, fmt.Errorf("sparse image: size %d is not a positive multiple of %d", size, sparseBlock)
	}
	// Only the file's data can hold a non-zero block: its holes (most of a
	// freshly made filesystem) are not read at all.
	exts := []sparse.Extent{{Off: 0, Len: size}}
	if f, ok := img.(*os.File); ok {
		var err error
		if exts, err = sparse.Extents(f, size); err != nil {
			return nil, err
		}
	}
	type run struct{ off, n int64 }
	var runs []run
	buf := make([]byte, 1<<20)
	done := int64(0) // extents rounded out to whole blocks may touch
	for _, e := range exts {
		start := max(e.Off/sparseBlock*sparseBlock, done)
		end := min((e.Off+e.Len+sparseBlock-1)/sparseBlock*sparseBlock, size)
		done = max(done, end)
		for at := start; at < end; at += int64(len(buf)) {
			chunk := buf[:min(int64(len(buf)), end-at)]
			if _, err := img.ReadAt(chunk, at); err != nil {
				return nil, fmt.Errorf("sparse image: read at %d: %w", at, err)
			}
			for i := int64(0); i < int64(len(chunk)); i += sparseBlock {
				off := at + i
				if allZeroBytes(chunk[i : i+sparseBlock]) {
					continue
				}
				if l := len(runs) - 1; l >= 0 && runs[l].off+runs[l].n == off {
					runs[l].n += sparseBlock
				} else {
					runs = append(runs, run{off, sparseBlock})
				}
			}
		}
	}
	var out bytes.Buffer
	le := binary.LittleEndian
	out.WriteString(sparseMagic)
	out.Write(le.AppendUint64(nil, uint64(size)))
	out.Write(le.AppendUint32(nil, uint32(len(runs))))
	for _, r := range runs {
		out.Write(le.AppendUint64(nil, uint64(r.off)))
		out.Write(le.AppendUint32(nil, uint32(r.n)))
		data := make([]byte, r.n)
		if _, err := img.ReadAt(data, r.off); err != nil {
			return nil, fmt.Errorf("sparse image: read at %d: %w", r.off, err)
		}
		out.Write(data)
	}
	return out.Bytes(), nil
}

// SparseSize returns the image size a sparse image declares.
func SparseSize(b []byte) (int64, error) {
	if len(b) < 20 || string(b[:8]) != sparseMagic {
		return 0, fmt.Errorf("%w: no header", ErrSparseImage)
	}
	size := binary.LittleEndian.Uint64(b[8:])
	if size == 0 || size%sparseBlock != 0 || size > 1<<40 {
		return 0, fmt.Errorf("%w: image size %d", ErrSparseImage, size)
	}
	return int64(size), nil
}

// WriteSparse writes a sparse image's runs to dst at their offsets and
// returns how many bytes it wrote. It checks the whole image before
// writing anything.
func WriteSparse(dst io.WriterAt, b []byte) (int64, error) {
	size, err := SparseSize(b)
	if err != nil {
		return 0, err
	}
	type run struct {
		off  int64
		data []byte
	}
	le := binary.LittleEndian
	count := le.Uint32(b[16:])
	if int64(count) > size/sparseBlock {
		return 0, fmt.Errorf("%w: %d runs in a %d-byte image", ErrSparseImage, count, size)
	}
	runs := make([]run, 0, count)
	rest := b[20:]
	next := int64(0)
	for i := uint32(0); i < count; i++ {
		if len(rest) < 12 {
			return 0, fmt.Errorf("%w: run %d truncated", ErrSparseImage, i)
		}
		off, n := le.Uint64(rest), uint64(le.Uint32(rest[8:]))
		rest = rest[12:]
		if off%sparseBlock != 0 || n == 0 || n%sparseBlock != 0 || off < uint64(next) || off > uint64(size) || n > uint64(size)-off {
			return 0, fmt.Errorf("%w: run %d at %d of %d bytes is out of order or outside the %d-byte image", ErrSparseImage, i, off, n, size)
		}
		if uint64(len(rest)) < n {
			return 0, fmt.Errorf("%w: run %d truncated", ErrSparseImage, i)
		}
		runs = append(runs, run{int64(off), rest[:n]})
		rest = rest[n:]
		next = int64(off + n)
	}
	if len(rest) != 0 {
		return 0, fmt.Errorf("%w: %d bytes after the last run", ErrSparseImage, len(rest))
	}
	var written int64
	for _, r := range runs {
		if _, err := dst.WriteAt(r.data, r.off); err != nil {
			return written, fmt.Errorf("write at %d: %w", r.off, err)
		}
		written += int64(len(r.data))
	}
	return written, nil
}

func allZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
