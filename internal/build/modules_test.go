package build

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ulikunitz/xz"
)

// fakeModule is the smallest relocatable ELF64 a module index reads: a
// .modinfo section with depends= and a section name table.
func fakeModule(depends string) []byte {
	modinfo := []byte("license=GPL\x00depends=" + depends + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	le := binary.LittleEndian
	modOff := 64
	strOff := modOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	b := make([]byte, shOff+3*64)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], 1)  // ET_REL
	le.PutUint16(b[18:], 62) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[58:], 64) // e_shentsize
	le.PutUint16(b[60:], 3)  // e_shnum
	le.PutUint16(b[62:], 2)  // e_shstrndx
	copy(b[modOff:], modinfo)
	copy(b[strOff:], shstr)
	sec := func(i int, name, typ uint32, off, size int) {
		h := b[shOff+i*64:]
		le.PutUint32(h[0:], name)
		le.PutUint32(h[4:], typ)
		le.PutUint64(h[24:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint64(h[48:], 1)
	}
	sec(1, 1, 1, modOff, len(modinfo)) // .modinfo, PROGBITS
	sec(2, 10, 3, strOff, len(shstr))  // .shstrtab, STRTAB
	return b
}

// Trixie's kernels ship modules as .ko.xz: they are indexed, their
// dependencies read through the compression, and the initrd gets them
// decompressed under their .ko name; plain .ko (bookworm) and built-ins
// work as before; a module in neither is named as missing.
func TestResolveModulesCompressed(t *testing.T) {
	dir := t.TempDir()
	drv := filepath.Join(dir, "kernel", "drivers")
	if err := os.MkdirAll(drv, 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := fakeModule("dm-bufio"), fakeModule("")
	if err := os.WriteFile(filepath.Join(drv, "dm-verity.ko"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw, err := xz.NewWriter(&zb)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drv, "dm-bufio.ko.xz"), zb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/block/virtio_blk.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := resolveModules(dir, []string{"virtio_blk", "dm_verity"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(drv, "dm-bufio.ko.xz"), filepath.Join(drv, "dm-verity.ko")}
	if !slices.Equal(got, want) {
		t.Fatalf("resolved %v, want %v (dependency first, built-in skipped)", got, want)
	}
	if data, err := readModule(got[0]); err != nil || !bytes.Equal(data, b) || moduleName(got[0]) != "dm-bufio.ko" {
		t.Errorf("decompressed %s: %d bytes, %v, named %s", got[0], len(data), err, moduleName(got[0]))
	}
	if _, err := resolveModules(dir, []string{"squashfs"}); err == nil {
		t.Error("a module in neither the tree nor modules.builtin was taken as present")
	}
	if err := os.WriteFile(filepath.Join(drv, "bad.ko.xz"), []byte("not xz"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveModules(dir, []string{"bad"}); err == nil {
		t.Error("a broken .ko.xz was read")
	}
}
