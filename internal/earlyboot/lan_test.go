package earlyboot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLANNetworkUnit(t *testing.T) {
	for _, tc := range []struct {
		addr, gw string
		want     []string // lines the unit must have
		err      string
	}{
		{addr: "10.20.0.10/24", want: []string{"Address=10.20.0.10/24", "DHCP=no", "Name=en* eth*"}},
		{addr: "10.20.0.10/24", gw: "10.20.0.1", want: []string{"Address=10.20.0.10/24", "Gateway=10.20.0.1"}},
		{addr: "10.20.0.10", err: "kubedos.address"},
		{addr: "10.20.0.10/32", err: "kubedos.address"},
		{addr: "fd00::1/64", err: "kubedos.address"},
		{addr: "10.20.0.10/24\nDHCP=yes", err: "kubedos.address"},
		{addr: "10.20.0.10/24", gw: "10.30.0.1", err: "kubedos.gateway"},
	} {
		got, err := LANNetworkUnit(tc.addr, tc.gw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q %q: error %v, want one naming %s", tc.addr, tc.gw, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.addr, err)
			continue
		}
		lines := strings.Split(string(got), "\n")
		for _, w := range tc.want {
			found := false
			for _, l := range lines {
				found = found || l == w
			}
			if !found {
				t.Errorf("%q: unit lacks %q:\n%s", tc.addr, w, got)
			}
		}
	}
}

func TestWriteLAN(t *testing.T) {
	old := LANNetworkFile
	LANNetworkFile = filepath.Join(t.TempDir(), "run", "systemd", "network", "10-kubedos-lan.network")
	t.Cleanup(func() { LANNetworkFile = old })
	if addr, err := WriteLAN(map[string]string{"kubedos.name": "w-1"}); err != nil || addr != "" {
		t.Fatalf("WriteLAN without an address = %q, %v", addr, err)
	}
	if _, err := os.Stat(LANNetworkFile); !os.IsNotExist(err) {
		t.Errorf("without kubedos.address a file was written: %v", err)
	}
	if _, err := WriteLAN(map[string]string{"kubedos.address": "bogus"}); err == nil {
		t.Error("a bad address was accepted")
	}
	if _, err := os.Stat(LANNetworkFile); !os.IsNotExist(err) {
		t.Errorf("a bad address left a file: %v", err)
	}
	if _, err := WriteLAN(map[string]string{"kubedos.address": "10.20.0.10/24"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(LANNetworkFile)
	if err != nil || !strings.Contains(string(b), "Address=10.20.0.10/24\n") {
		t.Errorf("unit %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Dir(LANNetworkFile)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, %v: networkd (not root) must read it", fi.Mode(), err)
	}
}

func TestParseSMBIOSStrings(t *testing.T) {
	raw := append([]byte{11, 5, 0, 0, 2}, []byte("kubedos.name=w-1\x00kubedos.hub=10.20.0.1:7443\x00\x00")...)
	got, err := parseSMBIOSStrings(raw)
	if err != nil || len(got) != 2 || got[0] != "kubedos.name=w-1" || got[1] != "kubedos.hub=10.20.0.1:7443" {
		t.Fatalf("got %q %v", got, err)
	}
	for _, bad := range [][]byte{nil, {11}, {11, 200, 0, 0}} {
		if _, err := parseSMBIOSStrings(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}
