package nodeconsole

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPickTTY(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string // under the root; "dev/x" makes a device stand-in
		want    string            // relative to dev, "" for an error
		wantWhy string
	}{
		{name: "a framebuffer console: tty1", files: map[string]string{"dev/tty1": "", "dev/ttyS0": "",
			"sys/class/vtconsole/vtcon0/name": "(S) dummy device", "sys/class/vtconsole/vtcon0/bind": "0",
			"sys/class/vtconsole/vtcon1/name": "(M) frame buffer device", "sys/class/vtconsole/vtcon1/bind": "1",
			"sys/class/tty/console/active": "ttyS0"}, want: "tty1", wantWhy: "tty1 on (M) frame buffer device"},
		{name: "only the dummy VT: the serial console", files: map[string]string{"dev/tty1": "", "dev/ttyS0": "",
			"sys/class/vtconsole/vtcon0/name": "(S) dummy device", "sys/class/vtconsole/vtcon0/bind": "1",
			"sys/class/tty/console/active": "tty0 ttyS0"}, want: "ttyS0"},
		{name: "no VT at all (CONFIG_VT off): hvc0", files: map[string]string{"dev/hvc0": "",
			"sys/class/tty/console/active": "hvc0"}, want: "hvc0"},
		{name: "nothing", files: map[string]string{"sys/class/tty/console/active": "tty0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, data := range tc.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, p), []byte(data+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, why, err := PickTTY(filepath.Join(root, "sys"), filepath.Join(root, "dev"))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("picked %s (%s), want an error", got, why)
				}
				return
			}
			if err != nil || got != filepath.Join(root, "dev", tc.want) {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
			if tc.wantWhy != "" && why != tc.wantWhy {
				t.Errorf("why %q, want %q", why, tc.wantWhy)
			}
		})
	}
}
