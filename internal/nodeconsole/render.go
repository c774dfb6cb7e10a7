package nodeconsole

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kubedos/kubedos/internal/wg"
)

// Style is how a line is drawn.
type Style uint8

// Styles, each one SGR sequence (sgr).
const (
	Plain   Style = iota
	Title         // reverse video, the full width
	Heading       // bold
	Bad           // red
	Good          // green
	Dim           // the footer
)

var sgr = map[Style]string{Plain: "", Title: "\x1b[7m", Heading: "\x1b[1m", Bad: "\x1b[1;31m", Good: "\x1b[32m", Dim: "\x1b[2m"}

// Line is one row of the screen: clean text of at most the screen's width.
type Line struct {
	Text  string
	Style Style
}

// Limits of the sections, so that the journal always keeps some rows on
// a 24-row screen.
const (
	maxReasonLines = 3
	maxFailing     = 5
)

// Render lays s out on a cols×rows screen: exactly rows lines, none wider
// than cols. Sections come in order of importance (identity, enrollment,
// hub, planes, health) and the journal takes the rows left; on a screen
// too small the last sections are cut, the footer stays.
func Render(s Snapshot, cols, rows int) []Line {
	if cols <= 0 || rows <= 0 {
		return nil
	}
	var body []Line
	add := func(st Style, format string, args ...any) {
		body = append(body, Line{fit(clean(fmt.Sprintf(format, args...)), cols), st})
	}
	body = append(body, titleLine(s, cols))
	boot := ""
	if s.Boot != "" {
		boot = " (" + s.Boot + ")"
	}
	add(Plain, "Build %s  slot %s%s  Secure Boot %s", or(s.Build), or(s.Slot), boot, or(s.SecureBoot))
	enrollStyle := Plain
	switch s.Enrollment {
	case "enrolled":
		enrollStyle = Good
	case "quarantined":
		enrollStyle = Bad
	}
	add(enrollStyle, "Enrollment  %s", or(s.Enrollment))
	if s.Reason != "" {
		label := "  why: "
		if s.Enrollment == "quarantined" {
			label = "  hub says: "
		}
		for i, l := range wrap(clean(s.Reason), cols-len(label), maxReasonLines) {
			if i > 0 {
				label = strings.Repeat(" ", len(label))
			}
			body = append(body, Line{label + l, enrollStyle})
		}
	}
	add(Plain, "EK sha256   %s", or(s.EKHash))
	answered := "not answered in this boot"
	if !s.HubAnswered.IsZero() {
		answered = "answered " + age(s.Now, s.HubAnswered) + " ago"
	}
	if s.Hub == "" {
		add(Plain, "Hub         none named")
	} else {
		add(Plain, "Hub         %s, %s", s.Hub, answered)
	}

	add(Heading, "Planes%s", suffix(s.PlanesError))
	if len(s.Planes) == 0 && s.PlanesError == "" {
		add(Plain, "  not joined")
	}
	for _, p := range s.Planes {
		add(planeStyle(p), "  %s", planeLine(p, s.Now))
	}

	healthy := "healthy"
	if !s.Healthy {
		healthy = "NOT healthy"
	}
	add(Heading, "Health: %s", healthy)
	var ok []string
	failing := 0
	for _, c := range s.Checks {
		if c.OK {
			ok = append(ok, c.Name)
			continue
		}
		if failing++; failing > maxFailing {
			continue
		}
		st := Bad
		if !c.Critical {
			st = Plain
		}
		add(st, "  x %s: %s", c.Name, c.Detail)
	}
	if failing > maxFailing {
		add(Bad, "  ... and %d more failing", failing-maxFailing)
	}
	if len(ok) > 0 {
		add(Good, "  ok: %s", strings.Join(ok, ", "))
	}

	footer := Line{fit(clean(footerText(s)), cols), Dim}
	if len(body) >= rows-1 {
		return pad(append(body[:max(rows-1, 0)], footer), rows, footer, rows == 1)
	}
	if left := rows - 1 - len(body) - 1; left > 0 {
		add(Heading, "kubedosd log")
		j := s.Journal
		if len(j) > left {
			j = j[len(j)-left:]
		}
		for _, e := range j {
			add(Plain, "%s %s", e.Time.UTC().Format("15:04:05"), e.Message)
		}
	}
	return pad(body, rows, footer, false)
}

// pad fills lines to rows with blank lines and the footer last.
func pad(lines []Line, rows int, footer Line, footerOnly bool) []Line {
	if footerOnly {
		return []Line{footer}
	}
	if len(lines) >= rows {
		return lines[:rows]
	}
	for len(lines) < rows-1 {
		lines = append(lines, Line{})
	}
	return append(lines, footer)
}

func titleLine(s Snapshot, cols int) Line {
	left := clean(fmt.Sprintf(" kubedos node %s (%s)  kubedosd %s", or(s.Node), or(s.Role), or(s.Kubedosd)))
	right := ""
	if !s.Now.IsZero() {
		right = s.Now.UTC().Format("2006-01-02 15:04:05 UTC ")
	}
	gap := cols - utf8.RuneCountInString(left) - utf8.RuneCountInString(right)
	if gap < 1 {
		return Line{fit(left, cols), Title}
	}
	return Line{left + strings.Repeat(" ", gap) + right, Title}
}

func footerText(s Snapshot) string {
	if s.Day0 {
		return "No shell here. No hub named: press F2 or s to set this node's address and hub."
	}
	return "No shell here: operators use `kubedos node` with their certificate."
}

func planeStyle(p wg.Status) Style {
	if p.Error != "" || !p.Up {
		return Bad
	}
	return Plain
}

// planeLine is one plane: interface, address, state and each peer with
// the age of its last handshake.
func planeLine(p wg.Status, now time.Time) string {
	state := "up"
	switch {
	case p.Error != "":
		state = "error: " + p.Error
	case !p.Up:
		state = "down"
	}
	var peers []string
	for _, peer := range p.Peers {
		name := peer.Name
		if name == "" {
			name = fit(peer.PublicKey, 8)
		}
		hs := "never"
		if !peer.LatestHandshake.IsZero() {
			hs = age(now, peer.LatestHandshake)
		}
		peers = append(peers, name+" "+hs)
	}
	who := "no peers"
	if len(peers) > 0 {
		who = strings.Join(peers, ", ")
	}
	return fmt.Sprintf("%-9s %-8s %s %s  %s", p.Plane, p.Interface, strings.Join(p.Addresses, ","), state, who)
}

// age is how long ago t was, in the largest whole unit.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func or(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func suffix(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}

// Draw writes lines to w as one frame: autowrap off and each row addressed
// and erased before it is written, so nothing scrolls and a shorter line
// leaves no remains; clear first erases the whole screen (after a resize).
func Draw(w io.Writer, lines []Line, cols int, clear bool) error {
	return DrawChanged(w, lines, nil, cols, clear)
}

// DrawChanged is Draw writing only the rows whose line differs from the
// one prev (the frame on the screen) has there: on a node's framebuffer
// console every row written is redrawn pixel by pixel, by emulated code
// on an emulated node, and from one frame to the next only the clock and
// the ages usually change. Nothing is written when nothing changed.
func DrawChanged(w io.Writer, lines, prev []Line, cols int, clear bool) error {
	var b strings.Builder
	for i, l := range lines {
		if !clear && i < len(prev) && prev[i] == l {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\x1b[?7l\x1b[?25l\x1b[0m")
			if clear {
				b.WriteString("\x1b[2J")
			}
		}
		fmt.Fprintf(&b, "\x1b[%d;1H\x1b[2K", i+1)
		text := l.Text
		if l.Style == Title {
			text += strings.Repeat(" ", max(cols-utf8.RuneCountInString(text), 0))
		}
		if st := sgr[l.Style]; st != "" {
			b.WriteString(st + text + "\x1b[0m")
		} else {
			b.WriteString(text)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := io.WriteString(w, b.String())
	return err
}
