package earlyboot

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/nodeid"
)

// smbiosTables points the SMBIOS globs at a directory holding a type 11
// table with strs (none when strs is empty).
func smbiosTables(t *testing.T, strs ...string) {
	t.Helper()
	dir := t.TempDir()
	if len(strs) > 0 {
		raw := append([]byte{11, 5, 0, 0, byte(len(strs))}, strings.Join(strs, "\x00")+"\x00\x00"...)
		if err := os.MkdirAll(filepath.Join(dir, "11-0"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "11-0", "raw"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oldOEM, oldSys := OEMStringsGlob, SystemInfoGlob
	OEMStringsGlob, SystemInfoGlob = filepath.Join(dir, "11-*/raw"), filepath.Join(dir, "1-*/raw")
	t.Cleanup(func() { OEMStringsGlob, SystemInfoGlob = oldOEM, oldSys })
}

func TestNodeIdentityFromStateFile(t *testing.T) {
	typed := nodeid.Identity{Name: "bm-1", Hub: "10.20.0.10:7443", Address: netip.MustParsePrefix("10.20.0.31/24"), Gateway: netip.MustParseAddr("10.20.0.1")}
	for _, tc := range []struct {
		name   string
		smbios []string
		file   bool
		want   map[string]string
	}{
		{name: "nothing anywhere", want: map[string]string{}},
		{name: "bare metal: the state file alone", file: true, want: map[string]string{"kubedos.name": "bm-1",
			"kubedos.hub": "10.20.0.10:7443", "kubedos.address": "10.20.0.31/24", "kubedos.gateway": "10.20.0.1"}},
		{name: "SMBIOS wins key by key", smbios: []string{"kubedos.name=vm-1", "kubedos.hub=10.0.0.1:7443"}, file: true,
			want: map[string]string{"kubedos.name": "vm-1", "kubedos.hub": "10.0.0.1:7443", "kubedos.address": "10.20.0.31/24", "kubedos.gateway": "10.20.0.1"}},
		{name: "SMBIOS alone", smbios: []string{"kubedos.name=vm-1"}, want: map[string]string{"kubedos.name": "vm-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			smbiosTables(t, tc.smbios...)
			path := filepath.Join(t.TempDir(), "state", "nodeid.conf")
			if tc.file {
				if err := WriteIdentityFile(path, typed); err != nil {
					t.Fatal(err)
				}
			}
			got, err := NodeIdentity(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWriteIdentityFileRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodeid.conf")
	for _, id := range []nodeid.Identity{
		{Name: "bm-1", Address: netip.MustParsePrefix("10.0.0.5/24")},                       // no hub
		{Name: "bm-1", Hub: "10.0.0.1:7443"},                                                // no address
		{Name: "BM_1", Hub: "10.0.0.1:7443", Address: netip.MustParsePrefix("10.0.0.5/24")}, // bad name
	} {
		if err := WriteIdentityFile(path, id); err == nil {
			t.Errorf("%+v was written", id)
		}
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a refused identity left a file")
	}
}

func TestReadIdentityFileBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodeid.conf")
	if err := os.WriteFile(path, []byte(strings.Repeat("kubedos.name=x\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReadIdentityFile(map[string]string{}, path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v, want a size refusal", err)
	}
}
