package nodeconsole

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// PortName names the virtio-serial port a hypervisor may offer for a copy
// of the screen (qemu: -device virtserialport,name=org.kubedos.console):
// what the e2e tests read, and an operator can attach to without a display.
const PortName = "org.kubedos.console"

// FindPort returns the device of the virtio-serial port named PortName
// (/sys/class/virtio-ports/vportNpM/name), "" when there is none.
func FindPort(sys, dev string) string {
	names, _ := filepath.Glob(filepath.Join(sys, "class/virtio-ports/vport*/name"))
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == PortName {
			return filepath.Join(dev, filepath.Base(filepath.Dir(n)))
		}
	}
	return ""
}

// portWriteTimeout bounds a frame's write: with nobody attached on the
// host the port does not take data, and the frame is dropped (the next
// one redraws every row).
const portWriteTimeout = time.Second

// Port is a read-only copy of the console on a virtio-serial port: it is
// not a terminal (no size, no modes), it reads no keys, so it never shows
// the Day 0 form, and a frame nobody takes is dropped.
type Port struct {
	f      *os.File
	closed chan struct{}
	once   sync.Once
}

// OpenPort opens the port's device.
func OpenPort(path string) (*Port, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	return &Port{f: f, closed: make(chan struct{})}, nil
}

// Read gives no keys: it waits for Close.
func (p *Port) Read([]byte) (int, error) {
	<-p.closed
	return 0, os.ErrClosed
}

// Write writes b, or drops it when nobody reads the port's other end.
func (p *Port) Write(b []byte) (int, error) {
	if err := p.f.SetWriteDeadline(time.Now().Add(portWriteTimeout)); err != nil {
		// Not pollable: a plain blocking write.
		return p.f.Write(b)
	}
	n, err := p.f.Write(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return len(b), nil
	}
	return n, err
}

// Size is the size every terminal has.
func (p *Port) Size() (int, int) { return defaultCols, defaultRows }

// Close ends Read and closes the device.
func (p *Port) Close() error {
	p.once.Do(func() { close(p.closed) })
	return p.f.Close()
}
