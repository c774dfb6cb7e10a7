//go:build e2e

package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hinshun/vt10x"
	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/target/qemu"
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

// TestNodeConsole boots the built image as an enrolling node with the
// console port attached and reads the node console off it through a VT
// emulator: the node's name and role, its build, enrollment, the EK hash
// the hub recorded and the hub's address must appear on the 80×24 screen.
func TestNodeConsole(t *testing.T) {
	c := manufacture(t)
	if _, err := os.Stat(swtpmLocalCA); err != nil {
		t.Skipf("swtpm local CA missing: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hubAddr := lis.Addr().String()
	lis.Close()
	serveHub(t, c, hubAddr, filepath.Join(work, "hubstate-console"), "--ek-ca", swtpmLocalCA)

	sock := filepath.Join(work, "console-port.sock")
	start := time.Now()
	vm, ctx := startVM(t, c, "console", c.role(build.FileDiskQcow2), func(cfg *qemu.VMConfig) {
		cfg.OEMStrings = []string{"kubedos.name=master", "kubedos.hub=" + hubAddrInGuest}
		cfg.GuestFwd = []qemu.Forward{{Guest: hubAddrInGuest, Host: hubAddr}}
		cfg.ConsoleSocket = sock
	})
	screen := readConsolePort(t, ctx, sock)
	re := regexp.MustCompile(regexp.QuoteMeta(agent.EnrolledLinePrefix) + `.*|` + regexp.QuoteMeta(agent.RefusedLinePrefix) + `.*`)
	m, _ := waitConsole(t, vm, ctx, "console", re)
	if m == nil || !strings.HasPrefix(m[0], agent.EnrolledLinePrefix) {
		t.Fatalf("the node did not enroll: %q", m)
	}
	n := nodeJSON(t, c, hubAddr, "master")
	want := []string{"kubedos node master (master)", "Build " + n.BuildID, "Enrollment  enrolled",
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
