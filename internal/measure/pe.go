package measure

import (
	"crypto/sha256"
	"debug/pe"
	"fmt"
	"io"
	"strings"
)

// SectionsFromPE reads a built UKI and returns its sections as systemd-stub
// 252 finds and measures them: a PE section matches a stub name when its
// 8-byte header name starts with it, a later match replaces an earlier one,
// sections with VirtualSize 0 are skipped, and the content is VirtualSize
// bytes (zero-filled past the raw data, as the loader maps it). The result
// is in stub order and can be passed to PredictPCR11.
func SectionsFromPE(r io.ReaderAt) ([]Section, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: UKI: %v", ErrInput, err)
	}
	defer f.Close()
	found := map[string]*pe.Section{}
	for _, s := range f.Sections {
		// debug/pe resolves "/N" string-table names to long names; the
		// stub compares the raw 8 bytes, which then start with '/'.
		if len(s.Name) > 8 {
			continue
		}
		for _, name := range StubSectionOrder {
			if strings.HasPrefix(s.Name, name) {
				found[name] = s
			}
		}
	}
	var out []Section
	for _, name := range StubSectionOrder {
		s := found[name]
		if s == nil || s.VirtualSize == 0 {
			continue
		}
		h := sha256.New()
		n := min(s.VirtualSize, s.Size)
		if _, err := io.Copy(h, io.NewSectionReader(s, 0, int64(n))); err != nil {
			return nil, fmt.Errorf("%w: UKI section %s: %v", ErrInput, name, err)
		}
		if pad := int64(s.VirtualSize) - int64(n); pad > 0 {
			if _, err := io.CopyN(h, zeroReader{}, pad); err != nil {
				return nil, err
			}
		}
		out = append(out, Section{Name: name, Digest: h.Sum(nil)})
	}
	return out, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
