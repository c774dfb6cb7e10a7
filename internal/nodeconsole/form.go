package nodeconsole

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kubedos/kubedos/internal/nodeid"
)

// maxInput bounds a field as nodeid bounds a value.
const maxInput = 253

// Field is one input of the Day 0 form.
type Field struct {
	Label, Hint string
	Value       string
	Err         string // why the value was refused, shown under it
	Optional    bool
}

// The form's fields, in order.
const (
	FieldName = iota
	FieldAddress
	FieldGateway
	FieldHub
	numFields
)

// Form is the Day 0 form: what a bare-metal node lacks to enroll. Only
// internal/nodeid decides what is valid, as for SMBIOS strings.
type Form struct {
	Fields  [numFields]Field
	Focus   int
	Message string // the result of the last save
}

// NewForm starts with name prefilled (the hostname, when it is a valid
// node name).
func NewForm(name string) *Form {
	f := &Form{}
	f.Fields[FieldName] = Field{Label: "Node name", Hint: "the spec's node name, e.g. w-3"}
	f.Fields[FieldAddress] = Field{Label: "LAN address", Hint: "address/prefix, e.g. 10.20.0.31/24"}
	f.Fields[FieldGateway] = Field{Label: "Gateway", Hint: "optional, inside the LAN, e.g. 10.20.0.1", Optional: true}
	f.Fields[FieldHub] = Field{Label: "Hub", Hint: "host:port, e.g. 10.20.0.10:7443"}
	if _, err := nodeid.Decode(map[string]string{nodeid.KeyName: name}); err == nil {
		f.Fields[FieldName].Value = name
	}
	return f
}

// Action is what a key asks of the console.
type Action uint8

// Actions.
const (
	ActionNone Action = iota
	ActionSubmit
	ActionCancel
)

// Key edits the form: printable ASCII into the focused field, Tab, the
// arrows and Enter move; Enter on the last field submits; Esc cancels.
func (f *Form) Key(k Key) Action {
	fld := &f.Fields[f.Focus]
	switch k.Kind {
	case KeyRune:
		if len(fld.Value) < maxInput && k.Rune != ' ' {
			fld.Value += string(k.Rune)
		}
	case KeyBackspace:
		if fld.Value != "" {
			fld.Value = fld.Value[:len(fld.Value)-1]
		}
	case KeyKill:
		fld.Value = ""
	case KeyTab, KeyDown:
		f.Focus = (f.Focus + 1) % numFields
	case KeyBackTab, KeyUp:
		f.Focus = (f.Focus + numFields - 1) % numFields
	case KeyEnter:
		if f.Focus == numFields-1 {
			return ActionSubmit
		}
		f.Focus++
	case KeyEsc:
		return ActionCancel
	}
	return ActionNone
}

// Identity validates every field, each problem shown under its field, and
// returns the identity when all are good.
func (f *Form) Identity() (nodeid.Identity, bool) {
	v := func(i int) string { return strings.TrimSpace(f.Fields[i].Value) }
	for i := range f.Fields {
		f.Fields[i].Err = ""
	}
	check := func(i int, pairs map[string]string) {
		if v(i) == "" {
			if !f.Fields[i].Optional {
				f.Fields[i].Err = "required"
			}
			return
		}
		if _, err := nodeid.Decode(pairs); err != nil {
			f.Fields[i].Err = want(err)
		}
	}
	check(FieldName, map[string]string{nodeid.KeyName: v(FieldName)})
	check(FieldAddress, map[string]string{nodeid.KeyAddress: v(FieldAddress)})
	if f.Fields[FieldAddress].Err == "" {
		// The gateway is checked against the address: it must be inside.
		check(FieldGateway, map[string]string{nodeid.KeyAddress: v(FieldAddress), nodeid.KeyGateway: v(FieldGateway)})
	}
	check(FieldHub, map[string]string{nodeid.KeyName: "n", nodeid.KeyHub: v(FieldHub)})
	for i := range f.Fields {
		if f.Fields[i].Err != "" {
			f.Focus = i
			return nodeid.Identity{}, false
		}
	}
	id, err := nodeid.Decode(map[string]string{nodeid.KeyName: v(FieldName), nodeid.KeyAddress: v(FieldAddress),
		nodeid.KeyGateway: v(FieldGateway), nodeid.KeyHub: v(FieldHub)})
	if err != nil {
		f.Message = want(err)
		return nodeid.Identity{}, false
	}
	return id, true
}

// want is the part of a nodeid error a form shows next to the field.
func want(err error) string {
	var fe *nodeid.FieldError
	if errors.As(err, &fe) {
		return fe.Want
	}
	return err.Error()
}

// RenderForm lays the form out on a cols×rows screen, and says where the
// cursor goes (0-based column and row) for the focused field.
func RenderForm(f *Form, cols, rows int) (lines []Line, curX, curY int) {
	add := func(st Style, s string) { lines = append(lines, Line{fit(clean(s), cols), st}) }
	lines = append(lines, Line{fit(" kubedos node: Day 0 setup", cols), Title})
	add(Plain, "This machine names no hub. Set its address and its hub; it then enrolls")
	add(Plain, "through the hub's attestation gate (the hub must expect this node).")
	add(Plain, "")
	for i, fld := range f.Fields {
		marker := "  "
		if i == f.Focus {
			marker = "> "
		}
		label := fmt.Sprintf("%s%-12s ", marker, fld.Label)
		if i == f.Focus {
			curY = len(lines)
			curX = min(len(label)+len(fld.Value), cols-1)
		}
		st := Plain
		if i == f.Focus {
			st = Heading
		}
		add(st, label+fld.Value)
		if fld.Err != "" {
			add(Bad, "               "+fld.Err)
		} else {
			add(Dim, "               "+fld.Hint)
		}
	}
	add(Plain, "")
	if f.Message != "" {
		for _, l := range wrap(clean(f.Message), cols, 3) {
			add(Bad, l)
		}
	}
	footer := Line{fit("Tab/arrows: move  Enter: next, save on Hub  Ctrl-U: clear  Esc: back", cols), Dim}
	if len(lines) > rows-1 {
		lines = lines[:max(rows-1, 0)]
	}
	for len(lines) < rows-1 {
		lines = append(lines, Line{})
	}
	if rows > 0 {
		lines = append(lines, footer)
	}
	curY = min(curY, max(rows-1, 0))
	return lines, curX, curY
}
