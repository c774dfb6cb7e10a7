package build

import (
	"fmt"
	"io"
	"sort"
)

// cpioEntry is one file of an initrd archive.
type cpioEntry struct {
	Path string // without leading slash
	Mode uint32 // including file type bits
	Data []byte
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
)

// writeCPIO writes a "newc" archive the kernel unpacks as an initramfs. It
// is written by hand because the format is tiny and must be reproducible:
// every timestamp, owner and inode number is fixed, entries are sorted.
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var off int64
	write := func(b []byte) error {
		n, err := w.Write(b)
		off += int64(n)
		return err
	}
	pad := func() error {
		if r := off % 4; r != 0 {
			return write(make([]byte, 4-r))
		}
		return nil
	}
	header := func(ino int, e cpioEntry) error {
		nlink := 1
		if e.Mode&cpioDir != 0 {
			nlink = 2
		}
		h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, 0, 0, len(e.Path)+1, 0)
		if err := write([]byte(h + e.Path + "\x00")); err != nil {
			return err
		}
		if err := pad(); err != nil {
			return err
		}
		if err := write(e.Data); err != nil {
			return err
		}
		return pad()
	}
	for i, e := range sorted {
		if err := header(i+1, e); err != nil {
			return fmt.Errorf("write cpio entry %s: %w", e.Path, err)
		}
	}
	return header(0, cpioEntry{Path: "TRAILER!!!"})
}
