package qemu

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bound makes a unix socket that is bound (its file exists) but not yet
// listening: the gap swtpm leaves between bind and listen.
func bound(t *testing.T, path string) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestDialSocketWaitsForListen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	fd := bound(t, path)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = syscall.Listen(fd, 1)
	}()
	conn, err := dialSocket(context.Background(), path, 10*time.Second)
	if err != nil {
		t.Fatalf("a socket that starts listening after bind was not reached: %v", err)
	}
	conn.Close()
}

func TestDialSocketGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	bound(t, path)
	_, err := dialSocket(context.Background(), path, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v, want one naming %s", err, path)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dialSocket(ctx, filepath.Join(t.TempDir(), "none"), time.Minute); err == nil {
		t.Fatal("a cancelled wait succeeded")
	}
}
