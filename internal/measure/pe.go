package measure

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SectionsFromPE reads a built UKI and returns the systemd-stub release it is
// built on (from the stub's .sdmagic) and its sections as that stub finds
// and measures them (a section the stub measures in a way not modelled,
// Stub.Unmodelled, is refused). A PE section matches a stub name when its 8-byte header
// name starts with it (252; a later match replaces an earlier one) or equals
// it (257; a name given twice is refused, as kubedos never writes one).
// Sections with VirtualSize 0 are skipped, and the content is VirtualSize
// bytes (zero-filled past the raw data, as the loader maps it). The result
// is in stub order and can be passed to PredictPCR11 with the stub.
func SectionsFromPE(r io.ReaderAt) (Stub, []Section, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return Stub{}, nil, fmt.Errorf("%w: UKI: %v", ErrInput, err)
	}
	defer f.Close()
	stub, err := stubOf(f)
	if err != nil {
		return Stub{}, nil, err
	}
	found := map[string]*pe.Section{}
	for _, s := range f.Sections {
		// debug/pe resolves "/N" string-table names to long names; the
		// stub compares the raw 8 bytes, which then start with '/'.
		if len(s.Name) > 8 {
			continue
		}
		for _, name := range stub.Unmodelled {
			if s.Name == name {
				return Stub{}, nil, fmt.Errorf("%w: UKI has a %s section, whose measurement by systemd-stub %d is not modelled", ErrInput, name, stub.Version)
			}
		}
		for _, name := range stub.Sections {
			if !stub.ExactNames && strings.HasPrefix(s.Name, name) {
				found[name] = s
			}
			if stub.ExactNames && s.Name == name {
				if found[name] != nil {
					return Stub{}, nil, fmt.Errorf("%w: UKI has section %s twice", ErrInput, name)
				}
				found[name] = s
			}
		}
	}
	var out []Section
	for _, name := range stub.Sections {
		s := found[name]
		if s == nil || s.VirtualSize == 0 {
			continue
		}
		h := sha256.New()
		n := min(s.VirtualSize, s.Size)
		if _, err := io.Copy(h, io.NewSectionReader(s, 0, int64(n))); err != nil {
			return Stub{}, nil, fmt.Errorf("%w: UKI section %s: %v", ErrInput, name, err)
		}
		if pad := int64(s.VirtualSize) - int64(n); pad > 0 {
			if _, err := io.CopyN(h, zeroReader{}, pad); err != nil {
				return Stub{}, nil, err
			}
		}
		out = append(out, Section{Name: name, Digest: h.Sum(nil)})
	}
	return stub, out, nil
}

// stubOf reads the release from the stub's .sdmagic section, e.g.
// "#### LoaderInfo: systemd-stub 257.13-1~deb13u1 ####".
func stubOf(f *pe.File) (Stub, error) {
	s := f.Section(".sdmagic")
	if s == nil {
		return Stub{}, fmt.Errorf("%w: UKI has no .sdmagic section: not built on systemd-stub", ErrInput)
	}
	b, err := s.Data()
	if err != nil {
		return Stub{}, fmt.Errorf("%w: UKI section .sdmagic: %v", ErrInput, err)
	}
	b = b[:min(uint32(len(b)), s.VirtualSize)]
	v, err := ParseStubMagic(string(bytes.TrimRight(b, "\x00")))
	if err != nil {
		return Stub{}, err
	}
	return StubRelease(v)
}

// ParseStubMagic returns the systemd major release named by a stub's
// .sdmagic text.
func ParseStubMagic(magic string) (int, error) {
	const prefix = "#### LoaderInfo: systemd-stub "
	rest, ok := strings.CutPrefix(magic, prefix)
	if !ok {
		return 0, fmt.Errorf("%w: .sdmagic %q does not start with %q", ErrInput, magic, prefix)
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	v, err := strconv.Atoi(rest[:end])
	if err != nil || end > 4 {
		return 0, fmt.Errorf("%w: .sdmagic %q names no systemd release", ErrInput, magic)
	}
	return v, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
