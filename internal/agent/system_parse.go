package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kubedos/kubedos/internal/api"
)

// Parsers of what the Debian tools print, kept apart from running them so
// tests feed them captured output.

// parseUnitList reads `systemctl list-units --plain --no-legend --full`:
// UNIT LOAD ACTIVE SUB DESCRIPTION, one unit a line. A leading status mark
// ("●" on failed or not-found units) is skipped.
func parseUnitList(out []byte) []api.Unit {
	var units []api.Unit
	for _, line := range strings.Split(string(out), "\n") {
		rest := strings.TrimSpace(line)
		if strings.HasPrefix(rest, "●") || strings.HasPrefix(rest, "*") {
			rest = strings.TrimSpace(strings.TrimLeft(rest, "●*"))
		}
		name, rest, _ := cutField(rest)
		load, rest, _ := cutField(rest)
		active, rest, _ := cutField(rest)
		sub, rest, ok := cutField(rest)
		if !ok {
			continue
		}
		units = append(units, api.Unit{Name: name, Load: load, Active: active, Sub: sub, Description: rest})
	}
	return units
}

// cutField splits the first whitespace-separated field off s.
func cutField(s string) (field, rest string, ok bool) {
	s = strings.TrimLeft(s, " \t")
	if s == "" {
		return "", "", false
	}
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, "", true
	}
	return s[:i], strings.TrimSpace(s[i:]), true
}

// parseShow reads `systemctl show --property=Id,LoadState,ActiveState,SubState,Description`.
func parseShow(name string, out []byte) api.Unit {
	u := api.Unit{Name: name}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "Id":
			if v != "" {
				u.Name = v
			}
		case "LoadState":
			u.Load = v
		case "ActiveState":
			u.Active = v
		case "SubState":
			u.Sub = v
		case "Description":
			u.Description = v
		}
	}
	return u
}

// parseUnitActions reads `systemctl show` of UnitActions' properties.
func parseUnitActions(out []byte) UnitActions {
	var a UnitActions
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "SuccessAction":
			a.SuccessAction = v
		case "FailureAction":
			a.FailureAction = v
		case "StartLimitAction":
			a.StartLimitAction = v
		case "JobTimeoutAction":
			a.JobTimeoutAction = v
		case "RefuseManualStart":
			a.RefuseManualStart = v == "yes"
		case "OnSuccess", "OnFailure":
			a.Triggers = append(a.Triggers, strings.Fields(v)...)
		}
	}
	return a
}

// maxJournalLine bounds one line of journalctl's JSON output; a longer
// entry is reported as too long rather than read.
const maxJournalLine = 1 << 20

// readLines calls fn with each line of r (without its newline). A line
// longer than max is passed cut, with tooLong set.
func readLines(r io.Reader, max int, fn func(line []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	tooLong := false
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(buf)+len(chunk) <= max {
			buf = append(buf, chunk...)
		} else {
			tooLong = true
		}
		if isPrefix {
			continue
		}
		if err := fn(buf, tooLong); err != nil {
			return err
		}
		buf, tooLong = buf[:0], false
	}
}

// journalEntry reads one line of `journalctl --output=json`. Field values
// are strings, arrays of bytes (binary data) or arrays of values (a field
// set more than once); an unreadable line becomes an entry saying so.
func journalEntry(line []byte, tooLong bool) api.LogEntry {
	if tooLong {
		return api.LogEntry{Priority: 4, Message: "(journal entry too large to show)", Truncated: true}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return api.LogEntry{Priority: 4, Message: fmt.Sprintf("(unreadable journal entry: %v)", err)}
	}
	e := api.LogEntry{Priority: 6}
	if us, err := strconv.ParseInt(journalValue(raw["__REALTIME_TIMESTAMP"]), 10, 64); err == nil {
		e.Time = time.UnixMicro(us).UTC()
	}
	if p, err := strconv.Atoi(journalValue(raw["PRIORITY"])); err == nil {
		e.Priority = p
	}
	if pid, err := strconv.Atoi(journalValue(raw["_PID"])); err == nil {
		e.PID = pid
	}
	e.Unit = journalValue(raw["_SYSTEMD_UNIT"])
	e.Identifier = journalValue(raw["SYSLOG_IDENTIFIER"])
	e.Message, e.Truncated = clip(journalValue(raw["MESSAGE"]), api.MaxLogMessageBytes)
	return e
}

// journalValue decodes one journal JSON field value to text.
func journalValue(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var b []byte // an array of byte values: binary or invalid UTF-8
	var nums []int
	if json.Unmarshal(v, &nums) == nil {
		for _, n := range nums {
			b = append(b, byte(n))
		}
		return string(b)
	}
	var many []json.RawMessage
	if json.Unmarshal(v, &many) == nil {
		parts := make([]string, 0, len(many))
		for _, m := range many {
			parts = append(parts, journalValue(m))
		}
		return strings.Join(parts, "\n")
	}
	return ""
}

// clip cuts s to at most max bytes on a rune boundary and makes it valid
// UTF-8 (JSON carries text).
func clip(s string, max int) (string, bool) {
	cut := false
	if len(s) > max {
		s, cut = s[:max], true
		// Drop a rune the cut split (at most UTFMax-1 bytes of it).
		for i := 1; i < utf8.UTFMax && len(s) > 0; i++ {
			if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
				break
			}
			s = s[:len(s)-1]
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD"), cut
}

// parseDmesg reads `dmesg --json --decode` (util-linux 2.38): facility and
// level as names, time in seconds since boot.
func parseDmesg(out []byte) ([]api.KernelMessage, error) {
	var doc struct {
		Dmesg []struct {
			Fac  string          `json:"fac"`
			Pri  json.RawMessage `json:"pri"`
			Time float64         `json:"time"`
			Msg  string          `json:"msg"`
		} `json:"dmesg"`
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil // an empty ring buffer prints nothing
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("dmesg --json: %w", err)
	}
	msgs := make([]api.KernelMessage, 0, len(doc.Dmesg))
	for _, d := range doc.Dmesg {
		m := api.KernelMessage{Seconds: d.Time, Facility: d.Fac, Level: journalValue(d.Pri)}
		if m.Level == "" && len(d.Pri) > 0 {
			m.Level = string(d.Pri) // numeric without --decode
		}
		m.Message, m.Truncated = clip(d.Msg, api.MaxLogMessageBytes)
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	Point   string
	Options []string // per-mount options: rw or ro first
	FSType  string
}

// parseMountInfo reads /proc/self/mountinfo (proc(5)).
func parseMountInfo(data []byte) []mount {
	var out []mount
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 6 {
			continue
		}
		m := mount{Point: unescapeMount(f[4]), Options: strings.Split(f[5], ",")}
		if pf := strings.Fields(post); len(pf) > 0 {
			m.FSType = pf[0]
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
