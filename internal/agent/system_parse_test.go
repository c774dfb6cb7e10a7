package agent

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

func TestParseUnitList(t *testing.T) {
	// systemctl list-units --type=service --all --plain --no-legend --full
	// (systemd 252); the status mark appears without --plain.
	out := `apparmor.service                       loaded    active   exited  Load AppArmor profiles
● chrony.service                       loaded    failed   failed  chrony, an NTP client/server
console-setup.service                  not-found inactive dead    console-setup.service
getty@tty1.service                     loaded    active   running Getty on tty1
systemd-fsck@dev-vda\x2d6.service      loaded    active   exited  File System Check on /dev/vda-6
short line

`
	want := []api.Unit{
		{Name: "apparmor.service", Load: "loaded", Active: "active", Sub: "exited", Description: "Load AppArmor profiles"},
		{Name: "chrony.service", Load: "loaded", Active: "failed", Sub: "failed", Description: "chrony, an NTP client/server"},
		{Name: "console-setup.service", Load: "not-found", Active: "inactive", Sub: "dead", Description: "console-setup.service"},
		{Name: "getty@tty1.service", Load: "loaded", Active: "active", Sub: "running", Description: "Getty on tty1"},
		{Name: `systemd-fsck@dev-vda\x2d6.service`, Load: "loaded", Active: "active", Sub: "exited", Description: "File System Check on /dev/vda-6"},
	}
	if got := parseUnitList([]byte(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseUnitList:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseShow(t *testing.T) {
	got := parseShow("chrony.service", []byte("Id=chrony.service\nLoadState=loaded\nActiveState=active\nSubState=running\nDescription=chrony, an NTP client/server\n"))
	want := api.Unit{Name: "chrony.service", Load: "loaded", Active: "active", Sub: "running", Description: "chrony, an NTP client/server"}
	if got != want {
		t.Errorf("parseShow = %+v, want %+v", got, want)
	}
	if got := parseShow("nope.service", []byte("Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nDescription=nope.service\n")); got.Load != "not-found" {
		t.Errorf("missing unit = %+v", got)
	}
}

func TestJournalEntry(t *testing.T) {
	tests := []struct {
		line string
		want api.LogEntry
	}{
		{`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","MESSAGE":"Started chrony.service","PRIORITY":"6","_SYSTEMD_UNIT":"init.scope","SYSLOG_IDENTIFIER":"systemd","_PID":"1"}`,
			api.LogEntry{Time: time.UnixMicro(1700000000123456).UTC(), Unit: "init.scope", Identifier: "systemd", PID: 1, Priority: 6, Message: "Started chrony.service"}},
		{`{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255],"PRIORITY":"3"}`,
			api.LogEntry{Time: time.UnixMicro(1).UTC(), Priority: 3, Message: "hi\uFFFD"}},
		{`{"MESSAGE":["first","second"]}`, api.LogEntry{Priority: 6, Message: "first\nsecond"}},
		{`{"MESSAGE":null}`, api.LogEntry{Priority: 6}},
		{`not json`, api.LogEntry{Priority: 4, Message: "(unreadable journal entry: invalid character 'o' in literal null (expecting 'u'))"}},
	}
	for _, tt := range tests {
		if got := journalEntry([]byte(tt.line), false); got != tt.want {
			t.Errorf("journalEntry(%s):\n got %+v\nwant %+v", tt.line, got, tt.want)
		}
	}
	long := `{"MESSAGE":"` + strings.Repeat("é", api.MaxLogMessageBytes) + `"}`
	got := journalEntry([]byte(long), false)
	if !got.Truncated || len(got.Message) > api.MaxLogMessageBytes || !strings.HasSuffix(got.Message, "é") {
		t.Errorf("long message: %d bytes, truncated %v, ends %q", len(got.Message), got.Truncated, got.Message[len(got.Message)-4:])
	}
	if got := journalEntry(nil, true); !got.Truncated || !strings.Contains(got.Message, "too large") {
		t.Errorf("too long line: %+v", got)
	}
}

func TestReadLines(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nlast-without-newline"
	var got []string
	var long []bool
	err := readLines(bytes.NewReader([]byte(in)), 50, func(line []byte, tooLong bool) error {
		got = append(got, string(line))
		long = append(long, tooLong)
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != "short" || !long[1] || len(got[1]) > 50 || got[2] != "last-without-newline" || long[2] {
		t.Errorf("readLines = %q %v %v", got, long, err)
	}
}

func TestParseDmesg(t *testing.T) {
	// dmesg --json --decode, util-linux 2.38.1.
	out := `{
   "dmesg": [
      {
         "fac": "kern",
         "pri": "notice",
         "time":     0.000000,
         "msg": "Linux version 6.1.0-18-amd64"
      },{
         "fac": "kern",
         "pri": "warn",
         "time":     0.000000,
         "msg": "[Firmware Bug]: TSC doesn't count with P0 frequency!"
      },{
         "fac": "daemon",
         "pri": "info",
         "time":  2631.277942,
         "msg": "systemd[1]: Started kubedosd.service."
      }
   ]
}`
	got, err := parseDmesg([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []api.KernelMessage{
		{Seconds: 0, Facility: "kern", Level: "notice", Message: "Linux version 6.1.0-18-amd64"},
		{Seconds: 0, Facility: "kern", Level: "warn", Message: "[Firmware Bug]: TSC doesn't count with P0 frequency!"},
		{Seconds: 2631.277942, Facility: "daemon", Level: "info", Message: "systemd[1]: Started kubedosd.service."},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseDmesg:\n got %+v\nwant %+v", got, want)
	}
	// Without --decode the level is a number.
	got, err = parseDmesg([]byte(`{"dmesg":[{"pri":6,"time":1.5,"msg":"x"}]}`))
	if err != nil || len(got) != 1 || got[0].Level != "6" {
		t.Errorf("numeric priority: %+v, %v", got, err)
	}
	if got, err := parseDmesg(nil); err != nil || len(got) != 0 {
		t.Errorf("empty ring buffer: %+v, %v", got, err)
	}
	if _, err := parseDmesg([]byte("dmesg: read kernel buffer failed")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestParseMountInfo(t *testing.T) {
	got := parseMountInfo([]byte(roMountInfo + `41 22 0:41 / /etc/my\040dir ro,relatime shared:13 - tmpfs tmpfs ro
bad line
`))
	if len(got) != 5 {
		t.Fatalf("%d mounts: %+v", len(got), got)
	}
	if m := got[0]; m.Point != "/" || m.FSType != "squashfs" || m.Options[0] != "ro" {
		t.Errorf("root mount %+v", m)
	}
	if m := got[4]; m.Point != "/etc/my dir" || m.FSType != "tmpfs" {
		t.Errorf("escaped mount %+v", m)
	}
}

func TestParseUnitActions(t *testing.T) {
	out := "SuccessAction=reboot\nFailureAction=none\nStartLimitAction=none\nJobTimeoutAction=none\nRefuseManualStart=yes\nOnSuccess=\nOnFailure=a.service reboot.target\n"
	got := parseUnitActions([]byte(out))
	want := UnitActions{SuccessAction: "reboot", FailureAction: "none", StartLimitAction: "none", JobTimeoutAction: "none",
		RefuseManualStart: true, Triggers: []string{"a.service", "reboot.target"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseUnitActions = %+v, want %+v", got, want)
	}
}
