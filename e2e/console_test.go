//go:build e2e

package e2e

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hinshun/vt10x"
)

// screenReader feeds what the guest draws on its console port into a VT
// emulator of the console's size.
type screenReader struct {
	mu sync.Mutex
	vt vt10x.Terminal
}

func (s *screenReader) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vt.Write(b)
}

func (s *screenReader) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	cols, rows := s.vt.Size()
	for y := range rows {
		var line strings.Builder
		for x := range cols {
			c := s.vt.Cell(x, y).Char
			if c == 0 {
				c = ' '
			}
			line.WriteRune(c)
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	return b.String()
}

// readConsolePort connects to the VM's console socket (QEMU listens once
// it runs) and copies what the guest draws into a screen until ctx ends.
func readConsolePort(t *testing.T, ctx context.Context, sock string) *screenReader {
	t.Helper()
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("console socket %s: %v", sock, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Cleanup(func() { conn.Close() })
	s := &screenReader{vt: vt10x.New(vt10x.WithSize(80, 24))}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			s.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	return s
}

// checkNodeConsole reads the node console off the VM's console port
// through a VT emulator (80×24): the node's name and role, its build,
// enrollment, the EK hash the hub recorded and the hub's address must
// appear, and no getty. Folded into TestEnrollmentGate's enrolling boot
// (started with the port attached) rather than a boot of its own.
func checkNodeConsole(t *testing.T, ctx context.Context, c *cluster, sock, hubAddr, name string, start time.Time) {
	t.Helper()
	screen := readConsolePort(t, ctx, sock)
	n := nodeJSON(t, c, hubAddr, name)
	want := []string{"kubedos node " + name + " (" + n.Role + ")", "Build " + n.BuildID, "Enrollment  enrolled",
		"EK sha256   " + n.EKHash, "Hub         " + hubAddrInGuest + ", answered", "Health:", "No shell here"}
	var text string
	for {
		text = screen.text()
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%q never appeared on the node console:\n%s", missing, text)
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("node console %s after power-on:\n%s", time.Since(start).Round(time.Second), text)
	// No getty is left to fail, or to run: they are masked in the image.
	if strings.Contains(text, "getty") {
		t.Errorf("a getty unit shows on the node console:\n%s", text)
	}
}
