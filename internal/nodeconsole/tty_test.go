package nodeconsole

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

func TestFindPort(t *testing.T) {
	root := t.TempDir()
	for port, name := range map[string]string{"vport0p1": "org.qemu.guest_agent.0", "vport1p1": PortName} {
		dir := filepath.Join(root, "sys/class/virtio-ports", port)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "name"), []byte(name+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if got := FindPort(filepath.Join(root, "sys"), "/dev"); got != "/dev/vport1p1" {
		t.Errorf("got %q, want /dev/vport1p1", got)
	}
	if got := FindPort(filepath.Join(root, "nothing"), "/dev"); got != "" {
		t.Errorf("got %q without ports", got)
	}
}

func TestPortDropsFramesNobodyReads(t *testing.T) {
	// A FIFO with a reader that never reads stands in for a port with
	// nobody attached: once its buffer is full a write would block.
	path := filepath.Join(t.TempDir(), "port")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := OpenPort(path)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 1<<20) // more than a pipe holds
	start := time.Now()
	if n, err := p.Write(frame); err != nil || n != len(frame) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if d := time.Since(start); d > 3*portWriteTimeout {
		t.Errorf("a frame nobody reads took %s", d)
	}
	done := make(chan struct{})
	go func() { p.Read(make([]byte, 1)); close(done) }()
	p.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Read")
	}
}
