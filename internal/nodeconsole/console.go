package nodeconsole

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kubedos/kubedos/internal/nodeid"
)

// Terminal is where the console draws and reads keys (a TTY, or a test's
// emulator). Close ends a Read in progress.
type Terminal interface {
	io.ReadWriteCloser
	// Size is the screen's columns and rows, asked before every frame.
	Size() (cols, rows int)
}

// Config is what Run needs.
type Config struct {
	Term Terminal
	// Snapshot gathers what the node knows now.
	Snapshot func(context.Context) Snapshot
	// Changed, when it delivers, asks for a new frame now (the agent's
	// state changed); nil: only Every.
	Changed <-chan struct{}
	// Every is the refresh period (default 2 s).
	Every time.Duration
	// Setup keeps the identity typed on Day 0 and starts enrollment; nil
	// offers no form.
	Setup func(context.Context, nodeid.Identity) error
	// Hostname prefills the form's node name.
	Hostname string
	// WaitForKey leaves the terminal alone until a key is pressed on it,
	// but for one line saying so: on a serial console, which is also the
	// machine's log, the screen is drawn only for someone who asks.
	WaitForKey bool
}

// WaitLine is the one line a WaitForKey console writes before a key.
const WaitLine = "kubedos node console: press Enter for the status screen (read-only, no shell)"

// ErrInputClosed is Run's error when the terminal stops giving input (a
// hung-up serial line): the supervisor opens it again.
var ErrInputClosed = errors.New("console input closed")

// Run draws the status screen until ctx ends, redrawing every Every, when
// Changed delivers and after each key, and runs the Day 0 form when asked
// for it (F2 or s while the snapshot offers it). It closes cfg.Term and
// waits for its reader before it returns.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Second
	}
	input := make(chan []byte)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer close(input)
		buf := make([]byte, 256)
		for {
			n, err := cfg.Term.Read(buf)
			if n > 0 {
				select {
				case input <- append([]byte(nil), buf[:n]...):
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		// Leave the terminal as a terminal: colours reset, cursor shown,
		// autowrap back on.
		_, _ = io.WriteString(cfg.Term, "\x1b[0m\x1b[2J\x1b[H\x1b[?25h\x1b[?7h")
		close(stop)
		cfg.Term.Close()
		<-done
	}()

	if cfg.WaitForKey {
		if _, err := io.WriteString(cfg.Term, "\r\n"+WaitLine+"\r\n"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-input:
			if !ok {
				return ErrInputClosed
			}
		}
	}
	c := &console{cfg: cfg}
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	if err := c.frame(ctx); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-cfg.Changed:
		case b, ok := <-input:
			if !ok {
				return ErrInputClosed
			}
			for _, k := range ParseKeys(b) {
				c.key(ctx, k)
			}
		}
		if err := c.frame(ctx); err != nil {
			return err
		}
	}
}

// console is Run's state between frames.
type console struct {
	cfg        Config
	form       *Form // non-nil while the Day 0 form is shown
	last       Snapshot
	cols, rows int
	clear      bool
	// drawn is the status frame on the screen (nil: unknown, after a form
	// or before the first frame); partial the frames drawn since the last
	// whole one.
	drawn   []Line
	partial int
}

// wholeEvery is how many frames may be drawn by their changed rows only
// before one is drawn whole again, so that whatever else wrote on the
// terminal (a kernel message on tty1) is gone within about 30 s.
const wholeEvery = 15

func (c *console) key(ctx context.Context, k Key) {
	if k.Kind == KeyRedraw {
		c.clear = true
		return
	}
	if c.form == nil {
		if c.cfg.Setup != nil && c.last.Day0 && (k.Kind == KeyF2 || k.Kind == KeyRune && (k.Rune == 's' || k.Rune == 'S')) {
			c.form, c.clear = NewForm(c.cfg.Hostname), true
		}
		return
	}
	switch c.form.Key(k) {
	case ActionCancel:
		c.form, c.clear = nil, true
	case ActionSubmit:
		c.form.Message = ""
		id, ok := c.form.Identity()
		if !ok {
			return
		}
		if err := c.cfg.Setup(ctx, id); err != nil {
			c.form.Message = fmt.Sprintf("not saved: %v", err)
			return
		}
		c.form, c.clear = nil, true
	}
}

// frame draws one screen, clearing it first after a resize.
func (c *console) frame(ctx context.Context) error {
	cols, rows := c.cfg.Term.Size()
	if cols != c.cols || rows != c.rows {
		c.cols, c.rows, c.clear = cols, rows, true
	}
	clear := c.clear
	c.clear = false
	if c.form != nil {
		c.drawn = nil
		lines, x, y := RenderForm(c.form, cols, rows)
		if err := Draw(c.cfg.Term, lines, cols, clear); err != nil {
			return err
		}
		_, err := fmt.Fprintf(c.cfg.Term, "\x1b[%d;%dH\x1b[?25h", y+1, x+1)
		return err
	}
	c.last = c.cfg.Snapshot(ctx)
	if c.cfg.Setup == nil {
		c.last.Day0 = false
	}
	lines, prev := Render(c.last, cols, rows), c.drawn
	if clear || c.partial >= wholeEvery {
		prev, c.partial = nil, 0
	} else {
		c.partial++
	}
	c.drawn = nil
	if err := DrawChanged(c.cfg.Term, lines, prev, cols, clear); err != nil {
		return err
	}
	c.drawn = lines
	return nil
}
