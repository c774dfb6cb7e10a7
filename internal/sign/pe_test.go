package sign

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// testSection is one section of a synthetic PE: raw data of size bytes of
// fill at file offset off.
type testSection struct {
	name      string
	off, size int
	fill      byte
}

// testPE describes a minimal PE32+ (or PE32) image for table tests.
type testPE struct {
	pe32     bool
	numDirs  int
	sections []testSection
	trailing []byte
}

const (
	testPEOff      = 0x40
	testHeaderSize = 0x200
)

func (p testPE) optOff() int { return testPEOff + 24 }
func (p testPE) optSize() int {
	if p.pe32 {
		return 96 + 8*p.numDirs
	}
	return 112 + 8*p.numDirs
}

// build lays the image out: headers padded to 0x200, then each section at
// its offset, then the trailing bytes.
func (p testPE) build() []byte {
	end := testHeaderSize
	for _, s := range p.sections {
		end = max(end, s.off+s.size)
	}
	b := make([]byte, end)
	le := binary.LittleEndian
	copy(b, "MZ")
	le.PutUint32(b[0x3c:], testPEOff)
	copy(b[testPEOff:], "PE\x00\x00")
	coff := testPEOff + 4
	le.PutUint16(b[coff:], 0x8664)
	le.PutUint16(b[coff+2:], uint16(len(p.sections)))
	le.PutUint16(b[coff+16:], uint16(p.optSize()))
	le.PutUint16(b[coff+18:], 0x0022) // executable, large-address aware
	opt := p.optOff()
	numDirsOff := opt + 108
	le.PutUint16(b[opt:], peMagic64)
	if p.pe32 {
		le.PutUint16(b[opt:], peMagic32)
		numDirsOff = opt + 92
	}
	// Enough of the rest for pesign's loader to accept the image.
	le.PutUint32(b[opt+32:], 0x1000) // SectionAlignment
	le.PutUint32(b[opt+36:], 0x200)  // FileAlignment
	le.PutUint32(b[opt+56:], uint32(0x1000*(len(p.sections)+1)))
	le.PutUint16(b[opt+68:], 10) // EFI application
	le.PutUint32(b[opt+60:], testHeaderSize)
	le.PutUint32(b[opt+64:], 0xdeadbeef) // checksum: must not be hashed
	le.PutUint32(b[numDirsOff:], uint32(p.numDirs))
	sec := opt + p.optSize()
	for i, s := range p.sections {
		h := b[sec+i*sectionHdrLen:]
		copy(h, s.name)
		le.PutUint32(h[8:], uint32(s.size))
		le.PutUint32(h[12:], uint32(0x1000*(i+1)))
		le.PutUint32(h[16:], uint32(s.size))
		le.PutUint32(h[36:], 0x60000020) // code, readable, executable
		le.PutUint32(h[20:], uint32(s.off))
		for j := range s.size {
			b[s.off+j] = s.fill
		}
	}
	return append(b, p.trailing...)
}

// want computes the expected digest from the spec's list of ranges,
// written out independently of peLayout.
func (p testPE) want(b []byte) []byte {
	h := sha256.New()
	opt := p.optOff()
	sum := opt + 64
	h.Write(b[:sum])
	if p.numDirs > dirCertTable {
		dirs := opt + 112
		if p.pe32 {
			dirs = opt + 96
		}
		cd := dirs + 8*dirCertTable
		h.Write(b[sum+4 : cd])
		h.Write(b[cd+8 : testHeaderSize])
	} else {
		h.Write(b[sum+4 : testHeaderSize])
	}
	secs := append([]testSection{}, p.sections...)
	for i := range secs { // insertion sort by offset, as edk2 does
		for j := i; j > 0 && secs[j].off < secs[j-1].off; j-- {
			secs[j], secs[j-1] = secs[j-1], secs[j]
		}
	}
	n := testHeaderSize
	for _, s := range secs {
		h.Write(b[s.off : s.off+s.size])
		n += s.size
	}
	if n < len(b) {
		h.Write(b[n:])
	}
	return h.Sum(nil)
}

func basicPE() testPE {
	return testPE{numDirs: 16, sections: []testSection{
		{".text", 0x200, 0x400, 0x90}, {".data", 0x600, 0x200, 0x11},
	}}
}

func TestAuthenticodeDigestLayouts(t *testing.T) {
	tests := []struct {
		name string
		pe   testPE
	}{
		{"two sections", basicPE()},
		{"PE32", func() testPE { p := basicPE(); p.pe32 = true; return p }()},
		{"sections listed out of file order", testPE{numDirs: 16, sections: []testSection{
			{".data", 0x600, 0x200, 0x11}, {".text", 0x200, 0x400, 0x90},
		}}},
		{"trailing data", func() testPE { p := basicPE(); p.trailing = []byte("debug data after sections"); return p }()},
		{"empty section skipped", testPE{numDirs: 16, sections: []testSection{
			{".bss", 0, 0, 0}, {".text", 0x200, 0x400, 0x90},
		}}},
		{"no certificate directory", func() testPE { p := basicPE(); p.numDirs = 4; return p }()},
		{"gap between sections", testPE{numDirs: 16, sections: []testSection{
			{".text", 0x200, 0x200, 0x90}, {".data", 0x600, 0x200, 0x11},
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.pe.build()
			got, err := AuthenticodeDigest(b, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.pe.want(b); !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

func TestAuthenticodeDigestMalformed(t *testing.T) {
	good := basicPE().build()
	opt := basicPE().optOff()
	le := binary.LittleEndian
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	tests := []struct {
		name string
		in   []byte
		msg  string
	}{
		{"empty", nil, "no MZ header"},
		{"not MZ", mut(func(b []byte) { b[0] = 'X' }), "no MZ header"},
		{"e_lfanew past end", mut(func(b []byte) { le.PutUint32(b[0x3c:], 0xfffffff0) }), "PE header offset"},
		{"no PE signature", mut(func(b []byte) { b[testPEOff] = 'X' }), "no PE signature"},
		{"bad magic", mut(func(b []byte) { le.PutUint16(b[opt:], 0x999) }), "neither PE32 nor PE32+"},
		{"optional header past end", mut(func(b []byte) { le.PutUint16(b[testPEOff+20:], 0xffff) }), "optional header"},
		{"too many data directories", mut(func(b []byte) { le.PutUint32(b[opt+108:], 1000) }), "data directories"},
		{"SizeOfHeaders past end", mut(func(b []byte) { le.PutUint32(b[opt+60:], 0x10000) }), "SizeOfHeaders"},
		{"SizeOfHeaders inside headers", mut(func(b []byte) { le.PutUint32(b[opt+60:], 0x10) }), "SizeOfHeaders"},
		{"section past end", mut(func(b []byte) { le.PutUint32(b[opt+240+16:], 0x100000) }), `section 0 (".text")`},
		{"section offset overflow", mut(func(b []byte) { le.PutUint32(b[opt+240+20:], 0xffffffff) }), "beyond end of file"},
		{"too many sections", mut(func(b []byte) { le.PutUint16(b[testPEOff+6:], 0xffff) }), "section headers"},
		{"certificate table not at end", mut(func(b []byte) {
			le.PutUint32(b[opt+112+32:], 0x200)
			le.PutUint32(b[opt+112+36:], 0x10)
		}), "does not end the file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := AuthenticodeDigest(tc.in, crypto.SHA256)
			if !errors.Is(err, ErrMalformedPE) {
				t.Fatalf("err = %v, want ErrMalformedPE", err)
			}
			if !regexp.MustCompile(regexp.QuoteMeta(tc.msg)).MatchString(err.Error()) {
				t.Errorf("err = %v, want it to mention %q", err, tc.msg)
			}
		})
	}
}

// TestAuthenticodeDigestPesign: pesign, an independent implementation,
// computes the same digest for the real EFI binaries. (pesign hashes
// sections in table order rather than file order, so it is not an oracle
// for the out-of-order synthetic images; see the osslsigncode test.)
func TestAuthenticodeDigestPesign(t *testing.T) {
	needTool(t, "pesign")
	files := map[string][]byte{}
	for _, f := range realEFI {
		if b, err := os.ReadFile(f); err == nil {
			files[filepath.Base(f)] = b
		}
	}
	// Trailing data starts at SUM_OF_BYTES_HASHED, not at the end of the
	// last section: with a gap they differ. edk2, sbsign and pesign agree
	// with us here; osslsigncode does not, so it is no oracle for this case.
	files["gap and trailing"] = testPE{numDirs: 16, sections: []testSection{
		{".text", 0x200, 0x200, 0x90}, {".data", 0x600, 0x200, 0x11},
	}, trailing: []byte("trailing")}.build()
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "image.efi")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			out := run(t, "pesign", "--hash", "--in", path, "--digest_type", "sha256")
			got := must(AuthenticodeDigest(b, crypto.SHA256))(t)
			m := regexp.MustCompile(`hash: ([0-9a-f]{64})`).FindStringSubmatch(out)
			if m == nil || m[1] != hex.EncodeToString(got) {
				t.Errorf("pesign says %q, we say %x", out, got)
			}
		})
	}
}

// TestAuthenticodeDigestOsslsigncode: images signed by sbsign, whose
// digest osslsigncode recomputes; both must equal ours. Covers sections out
// of file order, where pesign (table order) is no oracle.
func TestAuthenticodeDigestOsslsigncode(t *testing.T) {
	needTool(t, "sbsign")
	needTool(t, "osslsigncode")
	ks := sharedKeys(t)
	files := map[string][]byte{}
	for _, f := range realEFI {
		if b, err := os.ReadFile(f); err == nil {
			files[filepath.Base(f)] = b
		}
	}
	files["out of order"] = testPE{numDirs: 16, sections: []testSection{
		{".data", 0x600, 0x200, 0x11}, {".text", 0x200, 0x400, 0x90},
	}, trailing: []byte("12345678")}.build()
	digestRE := regexp.MustCompile(`(Current|Calculated) message digest\s*:\s*([0-9A-F]+)`)
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.efi"), filepath.Join(dir, "out.efi")
			if err := os.WriteFile(in, b, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "sbsign", "--key", ks.Path(FileDBKey), "--cert", ks.Path(FileDBCert), "--output", out, in)
			msg := run(t, "osslsigncode", "verify", "-in", out, "-CAfile", ks.Path(FileDBCert))
			got := hexs(must(AuthenticodeDigest(readFile(t, out), crypto.SHA256))(t))
			ms := digestRE.FindAllStringSubmatch(msg, -1)
			if len(ms) != 2 {
				t.Fatalf("osslsigncode output has no digests:\n%s", msg)
			}
			for _, m := range ms {
				if m[2] != got {
					t.Errorf("%s digest %s, ours %s", m[1], m[2], got)
				}
			}
		})
	}
}
