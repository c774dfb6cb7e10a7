package nodeconsole

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Default size when the terminal does not know its own (a serial line
// reports 0×0): the size every terminal has.
const defaultCols, defaultRows = 80, 24

// PickTTY chooses the console's terminal under the sysfs and /dev roots
// given ("/sys", "/dev" on a node): tty1 when a virtual terminal is drawn
// somewhere (a vtconsole other than the dummy one is bound: VGA text or a
// framebuffer), else the first serial console the kernel writes to
// (/sys/class/tty/console/active, e.g. ttyS0 from console=ttyS0). The
// serial console is taken only then, because its log is the machine's only
// record when nothing is on screen. It says why it chose as it did.
func PickTTY(sys, dev string) (path, why string, err error) {
	if _, err := os.Stat(filepath.Join(dev, "tty1")); err == nil {
		if name, ok := drawnVT(sys); ok {
			return filepath.Join(dev, "tty1"), "tty1 on " + name, nil
		}
	}
	active, err := os.ReadFile(filepath.Join(sys, "class/tty/console/active"))
	if err != nil {
		return "", "", fmt.Errorf("no virtual terminal shown and no console listed: %w", err)
	}
	for _, name := range strings.Fields(string(active)) {
		if strings.HasPrefix(name, "tty") && len(name) > 3 && name[3] >= '0' && name[3] <= '9' {
			continue // a virtual terminal, not drawn anywhere
		}
		if _, err := os.Stat(filepath.Join(dev, name)); err == nil {
			return filepath.Join(dev, name), "serial console " + name + " (no virtual terminal is drawn)", nil
		}
	}
	return "", "", fmt.Errorf("no virtual terminal shown and no serial console in %q", strings.TrimSpace(string(active)))
}

// drawnVT finds a bound vtconsole that is not the dummy one.
func drawnVT(sys string) (string, bool) {
	dirs, _ := filepath.Glob(filepath.Join(sys, "class/vtconsole/vtcon*"))
	for _, d := range dirs {
		bind, _ := os.ReadFile(filepath.Join(d, "bind"))
		name, _ := os.ReadFile(filepath.Join(d, "name"))
		n := strings.TrimSpace(string(name))
		if strings.TrimSpace(string(bind)) == "1" && n != "" && !strings.Contains(strings.ToLower(n), "dummy") {
			return n, true
		}
	}
	return "", false
}

// TTY is a terminal device in raw mode: no echo, no line editing, no
// signals from the keyboard (Ctrl-C does nothing here).
type TTY struct {
	f     *os.File
	saved *unix.Termios
}

// OpenTTY opens path without making it kubedosd's controlling terminal
// and puts it in raw mode; Close restores it.
func OpenTTY(path string) (*TTY, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	t := &TTY{f: f}
	err = t.control(func(fd int) error {
		saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return fmt.Errorf("console %s is not a terminal: %w", path, err)
		}
		raw := *saved
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
			return fmt.Errorf("console %s: raw mode: %w", path, err)
		}
		t.saved = saved
		return nil
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// control runs fn on the descriptor without f.Fd, which would make it
// blocking: Close must be able to end a Read in progress.
func (t *TTY) control(fn func(fd int) error) error {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (t *TTY) Read(b []byte) (int, error)  { return t.f.Read(b) }
func (t *TTY) Write(b []byte) (int, error) { return t.f.Write(b) }

// Close restores the terminal's modes and closes it.
func (t *TTY) Close() error {
	serr := t.control(func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, t.saved) })
	return errors.Join(serr, t.f.Close())
}

// Size asks the terminal (TIOCGWINSZ): a VT knows its size and a resize
// (fbset, stty) shows at the next frame; a serial line says 0×0, taken as
// 80×24.
func (t *TTY) Size() (cols, rows int) {
	var ws *unix.Winsize
	err := t.control(func(fd int) (err error) { ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); return err })
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return defaultCols, defaultRows
	}
	return int(ws.Col), int(ws.Row)
}
