package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// fakeTools puts shell scripts named like the Debian tools first on PATH;
// each records its arguments in dir/<tool>.args.
func fakeTools(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		script := "#!/bin/sh\necho \"$@\" >> " + filepath.Join(dir, name+".args") + "\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

func toolArgs(t *testing.T, dir, tool string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, tool+".args"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestHostSystemTools runs HostSystem against stand-ins of systemctl,
// journalctl and dmesg: the arguments it passes, the output it parses and
// the exit codes it tolerates.
func TestHostSystemTools(t *testing.T) {
	dir := fakeTools(t, map[string]string{
		"systemctl": `case "$1" in
is-system-running) echo degraded; exit 1;;
list-units) echo "chrony.service loaded failed failed chrony, an NTP client/server";;
show) printf 'Id=chrony.service\nLoadState=loaded\nActiveState=active\nSubState=running\nDescription=chrony\n';;
restart) echo "Job for $3 failed." >&2; exit 1;;
esac`,
		"journalctl": `echo '{"__REALTIME_TIMESTAMP":"1700000000000000","MESSAGE":"one","_SYSTEMD_UNIT":"chrony.service"}'
echo '{"__REALTIME_TIMESTAMP":"1700000001000000","MESSAGE":"two","_SYSTEMD_UNIT":"chrony.service"}'
case "$*" in *--follow*) exec sleep 60;; esac`,
		"dmesg": `echo '{"dmesg":[{"fac":"kern","pri":"info","time":1.000000,"msg":"hello"}]}'`,
	})
	h := NewHostSystem()
	ctx := context.Background()
	if st, err := h.SystemState(ctx); st != "degraded" || err != nil {
		t.Errorf("SystemState = %q, %v; want degraded despite the exit status", st, err)
	}
	if failed, err := h.FailedUnits(ctx); err != nil || len(failed) != 1 || failed[0] != "chrony.service" {
		t.Errorf("FailedUnits = %v, %v", failed, err)
	}
	if u, err := h.Unit(ctx, "chrony.service"); err != nil || u.Load != "loaded" || u.Sub != "running" {
		t.Errorf("Unit = %+v, %v", u, err)
	}
	if err := h.Restart(ctx, "chrony.service"); err == nil || !strings.Contains(err.Error(), "Job for chrony.service failed.") {
		t.Errorf("failed restart: %v, want systemctl's message", err)
	}
	if args := toolArgs(t, dir, "systemctl"); !strings.Contains(args, "restart -- chrony.service") || !strings.Contains(args, "show --property=Id,LoadState,ActiveState,SubState,Description -- chrony.service") {
		t.Errorf("systemctl called with\n%s", args)
	}

	since := time.Unix(1700000000, 0)
	entries, err := h.Journal(ctx, JournalQuery{Unit: "chrony.service", Lines: 2, Since: since})
	if err != nil || len(entries) != 2 || entries[1].Message != "two" || !entries[0].Time.Equal(since) {
		t.Errorf("Journal = %+v, %v", entries, err)
	}
	if args := toolArgs(t, dir, "journalctl"); args != "--no-pager --all --output=json --output-fields=MESSAGE,PRIORITY,_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_PID --lines=2 --since=@1700000000 --unit=chrony.service" {
		t.Errorf("journalctl called with %q", args)
	}

	// Follow: entries as they come; leaving stops journalctl and is no error.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []string
	start := time.Now()
	err = h.FollowJournal(fctx, JournalQuery{Lines: 10}, func(e api.LogEntry) error {
		got = append(got, e.Message)
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	if err != nil || len(got) != 2 || time.Since(start) > 5*time.Second {
		t.Errorf("FollowJournal = %v, %v after %s", got, err, time.Since(start))
	}
	stop := errors.New("stop")
	if err := h.FollowJournal(ctx, JournalQuery{Lines: 1}, func(api.LogEntry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("FollowJournal with a failing sender = %v", err)
	}

	if msgs, err := h.Kernel(ctx); err != nil || len(msgs) != 1 || msgs[0].Message != "hello" || msgs[0].Level != "info" {
		t.Errorf("Kernel = %+v, %v", msgs, err)
	}
	if args := toolArgs(t, dir, "dmesg"); args != "--json --decode" {
		t.Errorf("dmesg called with %q", args)
	}
}

func TestHostSysctl(t *testing.T) {
	h := &HostSystem{SysctlDir: t.TempDir()}
	p := filepath.Join(h.SysctlDir, "net", "ipv4", "tcp_rmem")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("4096\t131072\t6291456\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := h.Sysctl("net.ipv4.tcp_rmem"); err != nil || v != "4096 131072 6291456" {
		t.Errorf("Sysctl = %q, %v", v, err)
	}
	if err := h.SetSysctl("net.ipv4.tcp_rmem", "4096 87380 6291456"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "4096 87380 6291456" {
		t.Errorf("written %q", b)
	}
	if _, err := h.Sysctl("net.ipv4.nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown parameter: %v, want ErrNotFound", err)
	}
	if err := h.SetSysctl("net.ipv4.tcp_wmem", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("setting an unknown parameter: %v, want ErrNotFound (never created)", err)
	}
}
