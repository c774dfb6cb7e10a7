package sparse

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestDigestEqualsReadingEveryByte(t *testing.T) {
	const mib = 1 << 20
	type write struct {
		off  int64
		data string
	}
	tests := []struct {
		name   string
		size   int64
		writes []write
	}{
		{"empty", 0, nil},
		{"all hole", 3 * mib, nil},
		{"data, hole, data", 9 * mib, []write{{0, "gpt header"}, {5*mib + 17, "root"}, {9*mib - 4, "end!"}}},
		{"ends in a hole", 4*mib + 100, []write{{mib, "x"}}},
		{"dense", 3000, []write{{0, string(make([]byte, 3000))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(tt.size); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.writes {
				if _, err := f.WriteAt([]byte(w.data), w.off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			all, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(all)
			sum, size, err := Digest(path)
			if err != nil {
				t.Fatal(err)
			}
			if sum != hex.EncodeToString(want[:]) || size != int64(len(all)) {
				t.Errorf("Digest = %s, %d; reading every byte %x, %d", sum, size, want, len(all))
			}
		})
	}
}

// A sparse file's holes are not listed as data (where the filesystem can
// tell): that is what spares reading them.
func TestExtentsSkipHoles(t *testing.T) {
	const mib = 1 << 20
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 * mib); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 40 * mib} {
		if _, err := f.WriteAt([]byte("data"), off); err != nil {
			t.Fatal(err)
		}
	}
	exts, err := Extents(f, 64*mib)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, e := range exts {
		data += e.Len
	}
	if len(exts) == 1 && exts[0] == (Extent{0, 64 * mib}) {
		t.Skip("this filesystem does not report holes (SEEK_DATA)")
	}
	if len(exts) != 2 || data > 2*mib || exts[0].Off != 0 || exts[1].Off > 40*mib || exts[1].Off+exts[1].Len <= 40*mib {
		t.Errorf("Extents = %+v: want two small runs, at 0 and around 40 MiB", exts)
	}
}
