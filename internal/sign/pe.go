package sign

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// peLayout is what Authenticode hashing needs from a PE image: where the
// excluded fields are, the header size, the sections' file extents, and the
// attribute certificate table. Parsed by hand rather than with debug/pe,
// which reads symbol and string tables we do not need (and has panicked on
// malformed input before), and does not expose header offsets.
type peLayout struct {
	checksumOff   int // PE checksum field, 4 bytes
	certDirOff    int // certificate-table data directory, 8 bytes; -1 if absent
	sizeOfHeaders int
	sections      []peExtent // raw data of each section with any, by file offset
	cert          peExtent   // attribute certificate table; size 0 if none
}

type peExtent struct{ off, size int }

const (
	peMagic32     = 0x10b
	peMagic64     = 0x20b
	dirCertTable  = 4 // IMAGE_DIRECTORY_ENTRY_SECURITY
	sectionHdrLen = 40
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedPE, fmt.Sprintf(format, args...))
}

// parsePE checks the structure firmware relies on and returns the layout.
// Every offset is bounds-checked against len(b) in int64 so no input can
// make it index out of range or overflow.
func parsePE(b []byte) (*peLayout, error) {
	n := int64(len(b))
	u16 := func(off int64) int64 { return int64(binary.LittleEndian.Uint16(b[off:])) }
	u32 := func(off int64) int64 { return int64(binary.LittleEndian.Uint32(b[off:])) }

	if n < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return nil, malformed("no MZ header")
	}
	peOff := u32(0x3c)
	if peOff+24 > n {
		return nil, malformed("PE header offset %#x beyond end of file (%d bytes)", peOff, n)
	}
	if string(b[peOff:peOff+4]) != "PE\x00\x00" {
		return nil, malformed("no PE signature at %#x", peOff)
	}
	numSections := u16(peOff + 6)
	optSize := u16(peOff + 20)
	opt := peOff + 24
	if opt+optSize > n {
		return nil, malformed("optional header (%d bytes at %#x) beyond end of file", optSize, opt)
	}
	if optSize < 2 {
		return nil, malformed("optional header too small (%d bytes)", optSize)
	}
	var dirs, numDirsOff int64
	switch magic := u16(opt); magic {
	case peMagic32:
		dirs, numDirsOff = opt+96, opt+92
	case peMagic64:
		dirs, numDirsOff = opt+112, opt+108
	default:
		return nil, malformed("optional header magic %#x is neither PE32 nor PE32+", magic)
	}
	if dirs > opt+optSize {
		return nil, malformed("optional header (%d bytes) too small for its fixed fields", optSize)
	}
	l := &peLayout{checksumOff: int(opt + 64), certDirOff: -1}
	numDirs := u32(numDirsOff)
	if dirs+numDirs*8 > opt+optSize {
		return nil, malformed("%d data directories do not fit the optional header (%d bytes)", numDirs, optSize)
	}
	if numDirs > dirCertTable {
		l.certDirOff = int(dirs + dirCertTable*8)
		off, size := u32(int64(l.certDirOff)), u32(int64(l.certDirOff)+4)
		if size > 0 {
			// The table's "address" is a file offset, and Authenticode
			// requires it to be the last thing in the file.
			if off+size != n {
				return nil, malformed("certificate table [%#x, +%#x) does not end the file (%d bytes)", off, size, n)
			}
			l.cert = peExtent{int(off), int(size)}
		}
	}
	l.sizeOfHeaders = int(u32(opt + 60))
	headersEnd := max(int64(l.checksumOff)+4, int64(l.certDirOff)+8)
	if int64(l.sizeOfHeaders) < headersEnd || int64(l.sizeOfHeaders) > n {
		return nil, malformed("SizeOfHeaders %#x outside [%#x, file size %#x]", l.sizeOfHeaders, headersEnd, n)
	}
	secTable := opt + optSize
	if secTable+numSections*sectionHdrLen > n {
		return nil, malformed("%d section headers at %#x beyond end of file", numSections, secTable)
	}
	for i := int64(0); i < numSections; i++ {
		h := secTable + i*sectionHdrLen
		size, ptr := u32(h+16), u32(h+20)
		if size == 0 {
			continue
		}
		if ptr+size > n {
			return nil, malformed("section %d (%q) raw data [%#x, +%#x) beyond end of file (%d bytes)",
				i, sectionName(b[h:h+8]), ptr, size, n)
		}
		l.sections = append(l.sections, peExtent{int(ptr), int(size)})
	}
	// Firmware and signers hash sections in file order, whatever the table
	// order; stable so equal offsets keep table order, as edk2's insertion
	// sort does.
	sort.SliceStable(l.sections, func(i, j int) bool { return l.sections[i].off < l.sections[j].off })
	return l, nil
}

func sectionName(raw []byte) string {
	for i, c := range raw {
		if c == 0 {
			return string(raw[:i])
		}
	}
	return string(raw)
}
