package nodeconsole

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxText bounds any one string before it is escaped: a hub's refusal or
// a journal line is attacker-influenced and must not cost more than a
// screen's worth.
const maxText = 2048

// clean makes s safe and measurable on a terminal: control characters
// (which could move the cursor or reprogram the terminal) and invalid
// UTF-8 become visible \xNN escapes, double-width and combining runes
// become '?', so one rune is one column.
func clean(s string) string {
	if len(s) > maxText {
		s = s[:maxText]
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf) || wide(r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

// wide reports runes a terminal draws two columns wide (East Asian wide
// and fullwidth blocks, emoji).
func wide(r rune) bool {
	return r >= 0x1100 && r <= 0x115f || r >= 0x2e80 && r <= 0xa4cf || r >= 0xac00 && r <= 0xd7a3 ||
		r >= 0xf900 && r <= 0xfaff || r >= 0xfe30 && r <= 0xfe4f || r >= 0xff00 && r <= 0xff60 ||
		r >= 0xffe0 && r <= 0xffe6 || r >= 0x1f300 && r <= 0x1faff || r >= 0x20000
}

// fit cuts an already clean s to at most w columns, marking a cut with '~'
// (ASCII: the VT's built-in font has no ellipsis).
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	return string(r[:w-1]) + "~"
}

// wrap breaks an already clean s into at most max lines of w columns, at
// spaces when it can; the last line is cut with fit.
func wrap(s string, w, max int) []string {
	if w <= 0 || max <= 0 {
		return nil
	}
	var out []string
	r := []rune(s)
	for len(r) > 0 && len(out) < max {
		if len(r) <= w {
			out = append(out, string(r))
			r = nil
			break
		}
		if len(out) == max-1 {
			out = append(out, fit(string(r), w))
			r = nil
			break
		}
		cut := w
		for i := w; i > w/2; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
		out = append(out, string(r[:cut]))
		r = []rune(strings.TrimLeft(string(r[cut:]), " "))
	}
	return out
}
