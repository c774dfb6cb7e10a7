package earlyboot

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// systemInfo builds a type 1 table as firmware lays it out (SMBIOS 2.8):
// manufacturer, product, serial and SKU as strings 1–4.
func systemInfo(sku string) []byte {
	raw := []byte{1, 0x1b, 0, 1, 1, 2, 0, 3}
	raw = append(raw, make([]byte, 16)...) // UUID
	raw = append(raw, 6, 4, 0)             // wake-up type, SKU = string 4, no family
	for _, s := range []string{"QEMU", "Standard PC (Q35 + ICH9, 2009)", "kubedos-101", sku} {
		raw = append(append(raw, s...), 0)
	}
	return append(raw, 0)
}

func TestOEMStringsFromTypes11And1(t *testing.T) {
	type11 := append([]byte{11, 5, 0, 0, 2}, "kubedos.name=w-1\x00kubedos.hub=10.20.0.1:7443\x00\x00"...)
	noSKU := []byte{1, 0x1b, 0, 1, 1, 2, 0, 3}
	noSKU = append(append(noSKU, make([]byte, 16)...), 6, 0, 0)
	noSKU = append(noSKU, "QEMU\x00PC\x00serial\x00\x00"...)
	for _, tc := range []struct {
		name   string
		tables map[string][]byte
		want   map[string]string
	}{
		{name: "type 11 only", tables: map[string][]byte{"11-0": type11},
			want: map[string]string{"kubedos.name": "w-1", "kubedos.hub": "10.20.0.1:7443"}},
		{name: "type 1 SKU only (Proxmox VE)",
			tables: map[string][]byte{"1-0": systemInfo("kubedos.name=w-2;kubedos.hub=10.0.0.10:7443;kubedos.address=10.0.0.22/24;other=x")},
			want:   map[string]string{"kubedos.name": "w-2", "kubedos.hub": "10.0.0.10:7443", "kubedos.address": "10.0.0.22/24"}},
		{name: "type 11 wins", tables: map[string][]byte{"11-0": type11, "1-0": systemInfo("kubedos.name=w-9;kubedos.address=10.0.0.9/24")},
			want: map[string]string{"kubedos.name": "w-1", "kubedos.hub": "10.20.0.1:7443", "kubedos.address": "10.0.0.9/24"}},
		{name: "a SKU that is not ours", tables: map[string][]byte{"1-0": systemInfo("Standard")}, want: map[string]string{}},
		{name: "no SKU string", tables: map[string][]byte{"1-0": noSKU}, want: map[string]string{}},
		{name: "no tables", want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, raw := range tc.tables {
				if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name, "raw"), raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			oldOEM, oldSys := OEMStringsGlob, SystemInfoGlob
			OEMStringsGlob, SystemInfoGlob = filepath.Join(dir, "11-*/raw"), filepath.Join(dir, "1-*/raw")
			t.Cleanup(func() { OEMStringsGlob, SystemInfoGlob = oldOEM, oldSys })
			got, err := OEMStrings()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOEMStringsNamesABadTable(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "1-0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "1-0", "raw"), []byte{1, 200}, 0o644); err != nil {
		t.Fatal(err)
	}
	old := SystemInfoGlob
	SystemInfoGlob = filepath.Join(dir, "1-*/raw")
	t.Cleanup(func() { SystemInfoGlob = old })
	if _, err := OEMStrings(); err == nil || !strings.Contains(err.Error(), "1-0/raw") {
		t.Errorf("err %v, want the table's path", err)
	}
}
