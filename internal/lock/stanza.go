package lock

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// The Debian control format (deb822) is parsed by hand: the library the
// design names for it (pault.ag/go/debian) is not reachable from here, and
// the subset needed — stanzas of "Field: value" with indented continuation
// lines — is small.

// field is one control field; Value keeps continuation lines verbatim.
type field struct{ Name, Value string }

// stanza is one paragraph with its fields in source order.
type stanza []field

// get returns a field's value (field names are case-insensitive).
func (s stanza) get(name string) string {
	for _, f := range s {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// String renders the stanza back in control format, without the blank separator line.
func (s stanza) String() string {
	var b strings.Builder
	for _, f := range s {
		b.WriteString(f.Name)
		b.WriteString(":")
		if f.Value != "" && !strings.HasPrefix(f.Value, "\n") {
			b.WriteString(" ")
		}
		b.WriteString(f.Value)
		b.WriteString("\n")
	}
	return b.String()
}

// readStanzas calls fn for each stanza of r. When keep is not nil only
// those fields are stored, which keeps a 50 MB Packages index cheap to scan.
func readStanzas(r io.Reader, keep map[string]bool, fn func(stanza) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var cur stanza
	skipping := false // inside the continuation lines of a field not kept
	lineNo := 0
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		err := fn(cur)
		cur = nil
		return err
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if err := flush(); err != nil {
				return err
			}
			skipping = false
		case line[0] == ' ' || line[0] == '\t':
			if skipping {
				continue
			}
			if len(cur) == 0 {
				return fmt.Errorf("line %d: continuation line outside a field", lineNo)
			}
			cur[len(cur)-1].Value += "\n" + line
		case line[0] == '#':
			// comments are allowed in control files, never in indexes
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return fmt.Errorf("line %d: %q is not a field", lineNo, line)
			}
			skipping = keep != nil && !keep[name]
			if !skipping {
				cur = append(cur, field{Name: name, Value: strings.TrimSpace(value)})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}
