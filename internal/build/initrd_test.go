package build

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeExecutable is the smallest ELF64 executable debug/elf reads: a header
// and program headers, the first of them PT_INTERP naming interp when interp
// is not empty (what a cgo build of kubedos-init has), then a PT_LOAD.
func fakeExecutable(typ uint16, interp string) []byte {
	le := binary.LittleEndian
	const phOff, phSize = 64, 56
	nph := 1
	if interp != "" {
		nph = 2
	}
	dataOff := phOff + nph*phSize
	b := make([]byte, dataOff+len(interp)+1)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], typ)
	le.PutUint16(b[18:], 62) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], phOff)
	le.PutUint16(b[52:], 64)     // e_ehsize
	le.PutUint16(b[54:], phSize) // e_phentsize
	le.PutUint16(b[56:], uint16(nph))
	ph := func(i int, typ uint32, off, size int) {
		h := b[phOff+i*phSize:]
		le.PutUint32(h[0:], typ)
		le.PutUint32(h[4:], 4) // PF_R
		le.PutUint64(h[8:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint64(h[40:], uint64(size))
		le.PutUint64(h[48:], 1)
	}
	i := 0
	if interp != "" {
		copy(b[dataOff:], interp)
		ph(0, 3, dataOff, len(interp)+1) // PT_INTERP
		i = 1
	}
	ph(i, 1, 0, len(b)) // PT_LOAD
	return b
}

// The initrd has no dynamic loader and no libraries: a /init that asks for
// an interpreter fails in the kernel with "Failed to execute /init (error
// -2)" (what a trixie image built with a cgo kubedos-init did), so the build
// refuses it, naming the file and the interpreter; a static executable,
// plain or position-independent, is taken.
func TestBuildInitrdInit(t *testing.T) {
	dir := t.TempDir()
	mods := filepath.Join(dir, "modules")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		data    []byte
		wantErr string // "" when the initrd must be built
	}{
		{"static", fakeExecutable(2, ""), ""},
		{"static-pie", fakeExecutable(3, ""), ""},
		{"dynamic", fakeExecutable(2, "/lib64/ld-linux-x86-64.so.2"), "/lib64/ld-linux-x86-64.so.2"},
		{"dynamic-pie", fakeExecutable(3, "/lib/ld-musl-x86_64.so.1"), "/lib/ld-musl-x86_64.so.1"},
		{"relocatable", fakeModule(""), "not an executable"},
		{"script", []byte("#!/bin/sh\nexec /sbin/init\n"), "not an ELF executable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			initBin := filepath.Join(dir, c.name)
			if err := os.WriteFile(initBin, c.data, 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, c.name+".cpio.gz")
			err := BuildInitrd(InitrdInput{InitBinary: initBin, ModulesDir: mods}, out)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("BuildInitrd: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("BuildInitrd took a /init that is %s", c.name)
			}
			for _, want := range []string{initBin, c.wantErr} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("an initrd was written despite %v", err)
			}
		})
	}
}
