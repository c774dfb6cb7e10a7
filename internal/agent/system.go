package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"golang.org/x/sys/unix"
)

// ServiceManager is what the node API needs of systemd.
type ServiceManager interface {
	// SystemState is `systemctl is-system-running`: running, degraded,
	// starting, maintenance…
	SystemState(ctx context.Context) (string, error)
	// FailedUnits names the units in the failed state.
	FailedUnits(ctx context.Context) ([]string, error)
	// Services lists every service unit systemd knows, loaded or not.
	Services(ctx context.Context) ([]api.Unit, error)
	// Unit reports one unit; a unit systemd cannot find has Load "not-found".
	Unit(ctx context.Context, name string) (api.Unit, error)
	// UnitActions reads what a unit file makes systemd do beyond running
	// the service (SuccessAction=, RefuseManualStart=, OnFailure=…).
	UnitActions(ctx context.Context, name string) (UnitActions, error)
	// Restart restarts a service and waits for systemd's answer.
	Restart(ctx context.Context, name string) error
	// Power reboots ("reboot") or powers off ("poweroff") the machine.
	Power(ctx context.Context, action string) error
}

// JournalQuery selects journal entries: the last Lines of Unit (every unit
// when empty) not older than Since (when set).
type JournalQuery struct {
	Unit  string
	Lines int
	Since time.Time
}

// LogReader reads the journal and the kernel ring buffer.
type LogReader interface {
	Journal(ctx context.Context, q JournalQuery) ([]api.LogEntry, error)
	// FollowJournal sends the last q.Lines entries, then each new one, to
	// fn until ctx ends (a nil error) or fn fails.
	FollowJournal(ctx context.Context, q JournalQuery, fn func(api.LogEntry) error) error
	// Kernel returns the kernel ring buffer, oldest first.
	Kernel(ctx context.Context) ([]api.KernelMessage, error)
}

// Settings reads and sets what the node configuration manages.
type Settings interface {
	Hostname() (string, error)
	SetHostname(name string) error
	// Sysctl reads a kernel parameter (dotted name), whitespace collapsed
	// to single spaces; an unknown parameter is an ErrNotFound error.
	Sysctl(key string) (string, error)
	SetSysctl(key, value string) error
}

// System is every interaction of the node API with the machine. HostSystem
// is the real one; tests use a fake, since a unit test cannot boot a node.
type System interface {
	ServiceManager
	LogReader
	Settings
}

// HostSystem runs Debian's own tools (systemctl, journalctl, dmesg from
// systemd 252 and util-linux 2.38) and the kernel's interfaces.
type HostSystem struct {
	// SysctlDir is /proc/sys.
	SysctlDir string
}

// NewHostSystem returns the machine's System.
func NewHostSystem() *HostSystem { return &HostSystem{SysctlDir: "/proc/sys"} }

// maxToolOutput bounds what is read from one tool run.
const maxToolOutput = 64 << 20

// run executes a tool and returns its standard output; a non-zero exit is
// an error carrying its standard error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &limitedWriter{w: &out, left: maxToolOutput}
	cmd.Stderr = &limitedWriter{w: &errb, left: 64 << 10}
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LC_ALL=C")
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// limitedWriter keeps the first left bytes and discards the rest.
type limitedWriter struct {
	w    io.Writer
	left int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.left <= 0 {
		return n, nil
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	l.left -= len(p)
	_, err := l.w.Write(p)
	return n, err
}

func (h *HostSystem) SystemState(ctx context.Context) (string, error) {
	// is-system-running exits non-zero for every state but running; its
	// output is the answer either way.
	out, err := run(ctx, "systemctl", "is-system-running")
	if s := strings.TrimSpace(string(out)); s != "" {
		return s, nil
	}
	return "", err
}

func (h *HostSystem) FailedUnits(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "systemctl", "list-units", "--failed", "--all", "--plain", "--no-legend", "--full", "--no-pager")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, u := range parseUnitList(out) {
		names = append(names, u.Name)
	}
	return names, nil
}

// Services parses the plain table: systemd 252's systemctl has no JSON
// output for unit lists (--output=json is for journal output only).
func (h *HostSystem) Services(ctx context.Context) ([]api.Unit, error) {
	out, err := run(ctx, "systemctl", "list-units", "--type=service", "--all", "--plain", "--no-legend", "--full", "--no-pager")
	if err != nil {
		return nil, err
	}
	return parseUnitList(out), nil
}

func (h *HostSystem) Unit(ctx context.Context, name string) (api.Unit, error) {
	out, err := run(ctx, "systemctl", "show", "--property=Id,LoadState,ActiveState,SubState,Description", "--", name)
	if err != nil {
		return api.Unit{}, err
	}
	return parseShow(name, out), nil
}

func (h *HostSystem) UnitActions(ctx context.Context, name string) (UnitActions, error) {
	out, err := run(ctx, "systemctl", "show", "--property=SuccessAction,FailureAction,StartLimitAction,JobTimeoutAction,RefuseManualStart,OnSuccess,OnFailure", "--", name)
	if err != nil {
		return UnitActions{}, err
	}
	return parseUnitActions(out), nil
}

func (h *HostSystem) Restart(ctx context.Context, name string) error {
	_, err := run(ctx, "systemctl", "restart", "--", name)
	return err
}

func (h *HostSystem) Power(ctx context.Context, action string) error {
	switch action {
	case "reboot", "poweroff":
	default:
		return fmt.Errorf("%w: power action %q", ErrInvalid, action)
	}
	_, err := run(ctx, "systemctl", action)
	return err
}

// journalArgs selects only the fields the API returns (__REALTIME_TIMESTAMP
// and __CURSOR always come along); --all, or journalctl writes fields over
// 4096 bytes as null (long lines are cut here instead, see readLines).
func journalArgs(q JournalQuery, follow bool) []string {
	args := []string{"--no-pager", "--all", "--output=json", "--output-fields=MESSAGE,PRIORITY,_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_PID",
		"--lines=" + strconv.Itoa(q.Lines)}
	if !q.Since.IsZero() {
		args = append(args, "--since=@"+strconv.FormatInt(q.Since.Unix(), 10))
	}
	if q.Unit != "" {
		args = append(args, "--unit="+q.Unit)
	}
	if follow {
		args = append(args, "--follow")
	}
	return args
}

func (h *HostSystem) Journal(ctx context.Context, q JournalQuery) ([]api.LogEntry, error) {
	out, err := run(ctx, "journalctl", journalArgs(q, false)...)
	if err != nil {
		return nil, err
	}
	var entries []api.LogEntry
	err = readLines(bytes.NewReader(out), maxJournalLine, func(line []byte, tooLong bool) error {
		entries = append(entries, journalEntry(line, tooLong))
		return nil
	})
	return entries, err
}

func (h *HostSystem) FollowJournal(ctx context.Context, q JournalQuery, fn func(api.LogEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "journalctl", journalArgs(q, true)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "LC_ALL=C")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var errb bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &errb, left: 64 << 10}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("journalctl: %w", err)
	}
	rerr := readLines(stdout, maxJournalLine, func(line []byte, tooLong bool) error { return fn(journalEntry(line, tooLong)) })
	gone := ctx.Err() != nil // the caller left: journalctl is killed, not failed
	cancel()
	werr := cmd.Wait()
	switch {
	case gone:
		return nil
	case rerr != nil:
		return rerr
	case werr != nil:
		return fmt.Errorf("journalctl --follow: %w: %s", werr, strings.TrimSpace(errb.String()))
	}
	return nil
}

func (h *HostSystem) Kernel(ctx context.Context) ([]api.KernelMessage, error) {
	out, err := run(ctx, "dmesg", "--json", "--decode")
	if err != nil {
		return nil, err
	}
	return parseDmesg(out)
}

func (h *HostSystem) Hostname() (string, error) { return os.Hostname() }

// SetHostname sets the kernel's hostname; /etc is on the read-only root,
// so kubedosd applies the stored configuration again at every start.
func (h *HostSystem) SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	return nil
}

// sysctlPath maps a validated dotted key to its file.
func (h *HostSystem) sysctlPath(key string) string {
	return filepath.Join(h.SysctlDir, filepath.FromSlash(strings.ReplaceAll(key, ".", "/")))
}

func (h *HostSystem) Sysctl(key string) (string, error) {
	b, err := os.ReadFile(h.sysctlPath(key))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: no kernel parameter %s", ErrNotFound, key)
	}
	if err != nil {
		return "", fmt.Errorf("read kernel parameter %s: %w", key, err)
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

func (h *HostSystem) SetSysctl(key, value string) error {
	if err := checkSysctlAllowed(key); err != nil {
		return err
	}
	f, err := os.OpenFile(h.sysctlPath(key), os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: no kernel parameter %s", ErrNotFound, key)
	}
	if err != nil {
		return fmt.Errorf("set kernel parameter %s: %w", key, err)
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("set kernel parameter %s = %q: %w", key, value, err)
	}
	return nil
}

// Start starts a unit and waits for systemd's answer.
func (h *HostSystem) Start(ctx context.Context, name string) error {
	_, err := run(ctx, "systemctl", "start", "--", name)
	return err
}

// Stop stops a unit and waits for systemd's answer (Restart=always does
// not start a unit stopped this way).
func (h *HostSystem) Stop(ctx context.Context, name string) error {
	_, err := run(ctx, "systemctl", "stop", "--", name)
	return err
}

// Kill sends SIGKILL to every process of a unit (systemctl kill); a stop
// job of the unit that waits on them then ends.
func (h *HostSystem) Kill(ctx context.Context, name string) error {
	_, err := run(ctx, "systemctl", "kill", "--signal=SIGKILL", "--", name)
	return err
}

// Queue starts a unit without waiting for it (systemctl start
// --no-block): the job is queued, its outcome is systemd's.
func (h *HostSystem) Queue(ctx context.Context, name string) error {
	_, err := run(ctx, "systemctl", "start", "--no-block", "--", name)
	return err
}

// DaemonReload makes systemd read its unit files and drop-ins again.
func (h *HostSystem) DaemonReload(ctx context.Context) error {
	_, err := run(ctx, "systemctl", "daemon-reload")
	return err
}

// Reload asks a unit to re-read its configuration (ExecReload) and waits
// for systemd's answer.
func (h *HostSystem) Reload(ctx context.Context, name string) error {
	_, err := run(ctx, "systemctl", "reload", "--", name)
	return err
}

// ActiveUnits reports which of names are active (or reloading), in one
// systemctl run: it prints one state a unit, in order, and exits non-zero
// when any is not active.
func (h *HostSystem) ActiveUnits(ctx context.Context, names []string) (map[string]bool, error) {
	if len(names) == 0 {
		return map[string]bool{}, nil
	}
	b, err := exec.CommandContext(ctx, "systemctl", append([]string{"is-active", "--"}, names...)...).Output()
	return parseActive(names, b, err)
}

// parseActive reads systemctl is-active's answer for names: inactive,
// failed, activating and unknown units are not active. Its exit status
// only matters when it printed no state for each unit.
func parseActive(names []string, b []byte, err error) (map[string]bool, error) {
	states := strings.Fields(string(b))
	if len(states) != len(names) {
		if err == nil {
			err = fmt.Errorf("%d states for %d units", len(states), len(names))
		}
		return nil, fmt.Errorf("systemctl is-active %s: %w", strings.Join(names, " "), err)
	}
	out := map[string]bool{}
	for i, n := range names {
		out[n] = states[i] == "active" || states[i] == "reloading"
	}
	return out, nil
}
