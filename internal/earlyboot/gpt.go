package earlyboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"

	"github.com/kubedos/kubedos/internal/efi"
)

// GPT reading, by hand: the initrd must find partitions by label without
// blkid or udev, and the on-disk format (UEFI spec §5.3) is a few fixed structs.

// Partition is one GPT entry.
type Partition struct {
	Number   int // 1-based, as the kernel names vdaN
	Label    string
	TypeGUID string
	PartUUID string
	FirstLBA uint64
	LastLBA  uint64 // inclusive
}

// Offset and Size are the partition's extent on the disk in bytes.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * 512 }
func (p Partition) Size() int64   { return int64(p.LastLBA-p.FirstLBA+1) * 512 }

// ErrNoGPT means the disk has no valid GPT header.
var ErrNoGPT = errors.New("no GPT")

// ReadGPT parses the primary GPT of a disk with 512-byte sectors.
func ReadGPT(r io.ReaderAt) ([]Partition, error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, 512); err != nil {
		return nil, fmt.Errorf("read GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, ErrNoGPT
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if count > 1024 || size < 128 || size > 4096 {
		return nil, fmt.Errorf("GPT header: implausible %d entries of %d bytes", count, size)
	}
	buf := make([]byte, int(count)*int(size))
	if _, err := r.ReadAt(buf, int64(entriesLBA)*512); err != nil {
		return nil, fmt.Errorf("read GPT entries: %w", err)
	}
	var parts []Partition
	for i := 0; i < int(count); i++ {
		e := buf[i*int(size) : (i+1)*int(size)]
		typ := efi.GUID(e[0:16]).String()
		if typ == "00000000-0000-0000-0000-000000000000" {
			continue
		}
		parts = append(parts, Partition{Number: i + 1, TypeGUID: typ, PartUUID: efi.GUID(e[16:32]).String(), Label: utf16Label(e[56:128]),
			FirstLBA: binary.LittleEndian.Uint64(e[32:]), LastLBA: binary.LittleEndian.Uint64(e[40:])})
	}
	return parts, nil
}

func utf16Label(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return strings.TrimSpace(string(utf16.Decode(u)))
}
