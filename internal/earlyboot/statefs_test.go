package earlyboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memDev is a device in memory.
type memDev []byte

func (m memDev) WriteAt(b []byte, off int64) (int, error) { return copy(m[off:], b), nil }

func TestSparseRoundTrip(t *testing.T) {
	img := make([]byte, 64<<10)
	copy(img[0:], "first")
	copy(img[4096*3+100:], "fourth")
	copy(img[4096*4:], "fifth, next to the fourth")
	copy(img[len(img)-4096:], "last")
	sp, err := EncodeSparse(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint32(sp[16:]); n != 3 {
		t.Errorf("%d runs, want 3 (adjacent blocks merged)", n)
	}
	if len(sp) >= len(img)/2 {
		t.Errorf("sparse image is %d bytes for %d with 4 blocks used", len(sp), len(img))
	}
	dst := make(memDev, len(img))
	for i := range dst {
		dst[i] = 0xee // what a fresh mapping decrypts to: not zeros
	}
	n, err := WriteSparse(dst, sp)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4*4096 {
		t.Errorf("wrote %d bytes", n)
	}
	for off := 0; off < len(img); off += 4096 {
		used := !allZeroBytes(img[off : off+4096])
		if used && !bytes.Equal(dst[off:off+4096], img[off:off+4096]) {
			t.Errorf("block %d differs", off/4096)
		}
		if !used && dst[off] != 0xee {
			t.Errorf("block %d was written though zero", off/4096)
		}
	}
}

func TestSparseRefuses(t *testing.T) {
	img := make([]byte, 16<<10)
	copy(img[4096:], "x")
	good, _ := EncodeSparse(bytes.NewReader(img), int64(len(img)))
	for name, edit := range map[string]func([]byte) []byte{
		"magic":          func(b []byte) []byte { b[0] = 'X'; return b },
		"size zero":      func(b []byte) []byte { clear(b[8:16]); return b },
		"size unaligned": func(b []byte) []byte { b[8]++; return b },
		"too many runs":  func(b []byte) []byte { b[16] = 5; return b },
		"run past end":   func(b []byte) []byte { b[20+1] = 0x40; return b },
		"run unaligned":  func(b []byte) []byte { b[20]++; return b },
		"truncated":      func(b []byte) []byte { return b[:len(b)-1] },
		"trailing":       func(b []byte) []byte { return append(b, 0) },
		"short header":   func(b []byte) []byte { return b[:19] },
	} {
		b := edit(bytes.Clone(good))
		dst := make(memDev, len(img))
		if _, err := WriteSparse(dst, b); !errors.Is(err, ErrSparseImage) {
			t.Errorf("%s: err = %v, want ErrSparseImage", name, err)
		}
		if !allZeroBytes(dst) {
			t.Errorf("%s: wrote before refusing", name)
		}
	}
	if _, err := EncodeSparse(bytes.NewReader(img), 100); err == nil {
		t.Error("an unaligned size encoded")
	}
}

func FuzzWriteSparse(f *testing.F) {
	img := make([]byte, 16<<10)
	copy(img[4096:], "x")
	good, _ := EncodeSparse(bytes.NewReader(img), int64(len(img)))
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		size, err := SparseSize(b)
		if err != nil || size > 1<<20 {
			return
		}
		dst := make(memDev, size)
		if _, err := WriteSparse(dst, b); err != nil && !errors.Is(err, ErrSparseImage) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

func TestCryptTable(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, StateKeySize)
	p := CryptParams{Device: "/dev/vda6", Key: key, Offset: StateDataOffset, Size: 63 << 20}
	want := "aes-xts-plain64 " + strings.Repeat("ab", 64) + " 0 /dev/vda6 2048 1 sector_size:4096"
	if got := p.Table(); got != want {
		t.Errorf("table:\n got %s\nwant %s", got, want)
	}
	if err := p.check(); err != nil {
		t.Error(err)
	}
	for name, q := range map[string]CryptParams{
		"short key":      {Device: "d", Key: key[:32], Offset: StateDataOffset, Size: 4096},
		"offset":         {Device: "d", Key: key, Offset: 512, Size: 4096},
		"size":           {Device: "d", Key: key, Offset: StateDataOffset, Size: 4095},
		"empty":          {Device: "d", Key: key, Offset: StateDataOffset},
		"nothing at all": {},
	} {
		if err := q.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The target parameters are NUL-terminated and keep the next spec 8-byte aligned.
	enc := (&targetLine{"crypt", 8, p.Table()}).encode()
	if (dmTargetSize+len(enc))%8 != 0 || enc[len(p.Table())] != 0 {
		t.Errorf("encoded parameters of %d bytes", len(enc))
	}
}

// A file's holes are skipped, not read: the encoding is the one every
// byte read gives, including data at the file's very end, and blocks of
// zeros the file does hold are left out as before.
func TestEncodeSparseFileSkipsHoles(t *testing.T) {
	const size = 8 << 20
	path := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, data := range map[int64][]byte{0: []byte("superblock"), 4096*300 + 7: []byte("inode"),
		5 << 20: make([]byte, 3*4096), 5<<20 + 3*4096: []byte("after written zeros"), size - 3: []byte("end")} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	all, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := EncodeSparse(bytes.NewReader(all), size)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EncodeSparse(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("from the file: %d bytes, %d runs; from its bytes: %d bytes, %d runs", len(got),
			binary.LittleEndian.Uint32(got[16:]), len(want), binary.LittleEndian.Uint32(want[16:]))
	}
}
