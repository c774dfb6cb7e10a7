package attesttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// SWTPMLocalCAConfig is where swtpm_localca (run by swtpm_setup
// --create-ek-cert) finds its CA; its issuercert line names the
// certificate that signs the EK certificates it makes.
const SWTPMLocalCAConfig = "/etc/swtpm-localca.conf"

// SWTPM is one swtpm process serving a TPM 2.0 over a Unix socket, with an
// EK certificate from swtpm's local CA in NV, as swtpm_setup makes it.
type SWTPM struct {
	// Dir holds the TPM state and the sockets.
	Dir string
	cmd *exec.Cmd
	// exited is closed when the process has been waited for.
	exited  chan struct{}
	waitErr error
	conn    net.Conn
}

// StartSWTPM manufactures a TPM in dir (created if missing; it must be an
// absolute path short enough for a Unix socket name) with swtpm_setup
// --tpm2 --create-ek-cert and runs swtpm socket on it, with startup-clear,
// and connects. TPM returns that one connection (swtpm serves one client at
// a time). ctx bounds the setup and, if it ends, kills the process; Close
// stops it.
func StartSWTPM(ctx context.Context, dir string) (*SWTPM, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("swtpm: state directory %q is not absolute", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	setup := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", dir, "--create-ek-cert", "--overwrite")
	if out, err := setup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("swtpm_setup in %s: %w: %s", dir, err, lastLines(out, 5))
	}
	sock, ctrl := filepath.Join(dir, "sock"), filepath.Join(dir, "ctrl")
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2",
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+ctrl,
		"--flags", "startup-clear", "--tpmstate", "dir="+dir,
		"--log", "file="+filepath.Join(dir, "swtpm.log"))
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	s := &SWTPM{Dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	conn, err := s.dial(ctx, sock)
	if err != nil {
		s.kill()
		return nil, err
	}
	s.conn = conn
	return s, nil
}

// dial connects to the server socket once swtpm listens on it.
func (s *SWTPM) dial(ctx context.Context, sock string) (net.Conn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			return conn, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("swtpm in %s exited before serving: %v (log %s)", s.Dir, s.waitErr, filepath.Join(s.Dir, "swtpm.log"))
		case <-ctx.Done():
			return nil, fmt.Errorf("swtpm in %s: %w", s.Dir, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("swtpm in %s: no server socket after 10 s: %w", s.Dir, err)
		}
	}
}

// TPM returns the TPM command channel: the socket, with each response read
// whole (a stream socket may split it). Closing it stops swtpm.
func (s *SWTPM) TPM() io.ReadWriteCloser { return &stream{conn: s.conn, s: s} }

// Close disconnects and stops swtpm (SIGTERM, which saves its state; swtpm
// 0.7 keeps running when its client disconnects), killing it after five
// seconds. It may be called more than once.
func (s *SWTPM) Close() error {
	if s.conn != nil {
		s.conn.Close()
	}
	if s.Exited() {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.kill()
	}
	return nil
}

func (s *SWTPM) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Exited reports whether the swtpm process has ended.
func (s *SWTPM) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// stream reads one whole TPM response per Read: the 10-byte header's size
// field says how long it is.
type stream struct {
	conn net.Conn
	s    *SWTPM
}

func (st *stream) Write(b []byte) (int, error) { return st.conn.Write(b) }

func (st *stream) Read(b []byte) (int, error) {
	var hdr [10]byte
	if _, err := io.ReadFull(st.conn, hdr[:]); err != nil {
		return 0, fmt.Errorf("swtpm: read response header: %w", err)
	}
	size := int(binary.BigEndian.Uint32(hdr[2:6]))
	if size < len(hdr) || size > len(b) {
		return 0, fmt.Errorf("swtpm: response of %d bytes (buffer %d)", size, len(b))
	}
	copy(b, hdr[:])
	if _, err := io.ReadFull(st.conn, b[len(hdr):size]); err != nil {
		return 0, fmt.Errorf("swtpm: read response body: %w", err)
	}
	return size, nil
}

func (st *stream) Close() error { return st.s.Close() }

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("; ")))
}

// SWTPMIssuerCert returns the path of the certificate that signs swtpm's EK
// certificates: the issuercert of SWTPMLocalCAConfig, or Debian's default.
func SWTPMIssuerCert() (string, error) {
	const def = "/var/lib/swtpm-localca/issuercert.pem"
	conf, err := os.ReadFile(SWTPMLocalCAConfig)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return def, nil
		}
		return "", err
	}
	for _, line := range bytes.Split(conf, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte("="))
		if ok && string(bytes.TrimSpace(k)) == "issuercert" {
			return string(bytes.TrimSpace(v)), nil
		}
	}
	return def, nil
}
