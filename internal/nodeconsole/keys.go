package nodeconsole

// KeyKind is what a key press means to the console.
type KeyKind uint8

// Keys the console knows; everything else is ignored.
const (
	KeyRune KeyKind = iota + 1
	KeyEnter
	KeyTab
	KeyBackTab
	KeyUp
	KeyDown
	KeyBackspace
	KeyEsc
	KeyF2
	KeyRedraw // Ctrl-L
	KeyKill   // Ctrl-U: clear the field
)

// Key is one key press.
type Key struct {
	Kind KeyKind
	Rune rune // for KeyRune: printable ASCII only
}

// escapes are the sequences the Linux VT, xterm and VT220 send for the
// keys the form uses. F2 is ESC [ [ B on the Linux VT, ESC O Q on xterm,
// ESC [ 1 2 ~ on VT220 and rxvt.
var escapes = map[string]KeyKind{
	"[A": KeyUp, "OA": KeyUp, "[B": KeyDown, "OB": KeyDown, "[Z": KeyBackTab,
	"[[B": KeyF2, "OQ": KeyF2, "[12~": KeyF2,
}

// ParseKeys reads the key presses in one read from the terminal. A lone
// ESC at the end is the Escape key; unknown sequences are dropped whole.
func ParseKeys(b []byte) []Key {
	var out []Key
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x1b:
			n := escapeLen(b[i+1:])
			if n == 0 {
				out = append(out, Key{Kind: KeyEsc})
				continue
			}
			if k, ok := escapes[string(b[i+1:i+1+n])]; ok {
				out = append(out, Key{Kind: k})
			}
			i += n
		case c == '\r' || c == '\n':
			out = append(out, Key{Kind: KeyEnter})
		case c == '\t':
			out = append(out, Key{Kind: KeyTab})
		case c == 0x7f || c == 0x08:
			out = append(out, Key{Kind: KeyBackspace})
		case c == 0x0c:
			out = append(out, Key{Kind: KeyRedraw})
		case c == 0x15:
			out = append(out, Key{Kind: KeyKill})
		case c >= 0x20 && c < 0x7f:
			out = append(out, Key{Kind: KeyRune, Rune: rune(c)})
		}
	}
	return out
}

// escapeLen is the length of the sequence after an ESC: CSI (ESC [ …
// final byte, with the Linux VT's ESC [ [ x function keys) or SS3 (ESC O
// x); 0 when none follows.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[0] {
	case 'O':
		return 2
	case '[':
		if b[1] == '[' {
			return min(3, len(b))
		}
		for i := 1; i < len(b); i++ {
			if b[i] >= 0x40 && b[i] <= 0x7e {
				return i + 1
			}
		}
		return len(b)
	}
	return 0
}
