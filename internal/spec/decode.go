package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/kubedos/kubedos/internal/boundedio"
	"gopkg.in/yaml.v3"
)

// MaxSpecBytes bounds the input so a hostile file cannot exhaust memory.
const MaxSpecBytes = 4 << 20

// Position is a place in the source YAML.
type Position struct{ Line, Column int }

// Document is a decoded spec with the source position of every YAML path,
// so validation problems can point at a line and column.
type Document struct {
	Spec      *ClusterSpec
	positions map[string]Position
}

// Parse decodes a ClusterSpec strictly: unknown fields, duplicate keys and
// values of the wrong kind are all reported at once, with their positions.
func Parse(data []byte) (*Document, error) {
	doc, structural, err := parse(data)
	if err != nil {
		return nil, err
	}
	if len(structural) > 0 {
		return nil, structural
	}
	return doc, nil
}

// parse is Parse that keeps what decoded when the structure has problems
// (the problems, located, beside the document); err is a problem that
// leaves nothing to decode.
func parse(data []byte) (*Document, Problems, error) {
	if len(data) > MaxSpecBytes {
		return nil, nil, Problems{{Message: fmt.Sprintf("spec is %d bytes, larger than the %d byte limit", len(data), MaxSpecBytes)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, Problems{{Message: "spec is empty"}}
		}
		return nil, nil, Problems{{Message: "not valid YAML: " + err.Error()}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, nil, Problems{{Line: extra.Line, Column: extra.Column, Message: "spec must be a single YAML document"}}
	}
	doc := &Document{Spec: &ClusterSpec{}, positions: map[string]Position{}}
	body := &root
	if body.Kind == yaml.DocumentNode && len(body.Content) == 1 {
		body = body.Content[0]
	}
	var c problems
	budget := maxWalk
	w := walker{pos: doc.positions, probs: &c, active: map[*yaml.Node]bool{}, budget: &budget}
	w.walk(body, reflect.TypeOf(ClusterSpec{}), "")
	if len(c.list) > 0 {
		// Values of the wrong kind stay zero; the rest decodes.
		_ = body.Decode(doc.Spec)
		return doc, doc.Locate(c.list), nil
	}
	if err := body.Decode(doc.Spec); err != nil {
		return nil, nil, Problems{{Message: err.Error()}}
	}
	return doc, nil, nil
}

// Locate fills in each problem's line and column from the nearest path that
// exists in the source (a missing field points at its parent).
func (d *Document) Locate(ps Problems) Problems {
	out := make(Problems, len(ps))
	for i, p := range ps {
		if p.Line == 0 {
			if pos, ok := d.lookup(p.Path); ok {
				p.Line, p.Column = pos.Line, pos.Column
			}
		}
		out[i] = p
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Column < out[j].Column
	})
	return out
}

func (d *Document) lookup(path string) (Position, bool) {
	for {
		if pos, ok := d.positions[path]; ok {
			return pos, true
		}
		if path == "" {
			return Position{}, false
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			path = ""
		} else {
			path = path[:cut]
		}
	}
}

// Load reads, decodes, defaults and validates a spec file. Every problem is
// located and returned at once as Problems; the file name prefixes I/O errors.
func Load(path string) (*ClusterSpec, error) {
	data, err := readSpec(path)
	if err != nil {
		return nil, err
	}
	return LoadBytes(data)
}

// LoadBytes is Load of a spec already read (a spec handed over the wire).
func LoadBytes(data []byte) (*ClusterSpec, error) {
	if len(data) > MaxSpecBytes {
		return nil, fmt.Errorf("spec: %d bytes, more than %d", len(data), MaxSpecBytes)
	}
	doc, err := Parse(data)
	if err != nil {
		return nil, err
	}
	s := WithDefaults(doc.Spec)
	if ps := Validate(s); len(ps) > 0 {
		return nil, doc.Locate(ps)
	}
	return s, nil
}

// readSpec reads a spec file of at most MaxSpecBytes (boundedio.ErrTooLarge
// past it).
func readSpec(path string) ([]byte, error) {
	data, err := boundedio.ReadFile(path, MaxSpecBytes)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return data, nil
}

// walker checks the YAML tree against the Go types before decoding, which is
// how strictness reports every unknown field rather than the first.
type walker struct {
	pos   map[string]Position
	probs *problems
	// active holds the alias targets being walked, to refuse an alias that
	// contains itself; budget bounds alias expansion ("billion laughs").
	active map[*yaml.Node]bool
	budget *int
}

// maxWalk bounds the nodes visited with aliases expanded.
const maxWalk = 200000

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if *w.budget--; *w.budget < 0 {
		if *w.budget == -1 {
			w.probs.add(path, "document expands to more than %d nodes (aliases?)", maxWalk)
		}
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if w.active[n.Alias] {
			w.probs.list = append(w.probs.list, Problem{Path: path, Line: n.Line, Column: n.Column, Message: "alias refers to a value that contains it"})
			return
		}
		w.active[n.Alias] = true
		defer delete(w.active, n.Alias)
		n = n.Alias
	}
	if _, seen := w.pos[path]; !seen {
		w.pos[path] = Position{n.Line, n.Column}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if !w.expect(n, yaml.MappingNode, "a mapping", path) {
			return
		}
		fields := yamlFields(t)
		w.eachKey(n, path, func(key string, k, v *yaml.Node) {
			f, ok := fields[key]
			if !ok {
				w.probs.list = append(w.probs.list, Problem{Path: join(path, key), Line: k.Line, Column: k.Column,
					Message: fmt.Sprintf("unknown field %q", key)})
				return
			}
			w.walk(v, f.Type, join(path, key))
		})
	case reflect.Map:
		if !w.expect(n, yaml.MappingNode, "a mapping", path) {
			return
		}
		w.eachKey(n, path, func(key string, _, v *yaml.Node) { w.walk(v, t.Elem(), join(path, key)) })
	case reflect.Slice:
		if !w.expect(n, yaml.SequenceNode, "a list", path) {
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		w.expect(n, yaml.ScalarNode, "a string", path)
	case reflect.Int:
		if w.expect(n, yaml.ScalarNode, "an integer", path) && n.Tag != "!!int" {
			w.mismatch(n, path, "an integer")
		}
	case reflect.Bool:
		if w.expect(n, yaml.ScalarNode, "true or false", path) && n.Tag != "!!bool" {
			w.mismatch(n, path, "true or false")
		}
	}
}

func (w walker) eachKey(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			w.probs.list = append(w.probs.list, Problem{Path: join(path, k.Value), Line: k.Line, Column: k.Column,
				Message: fmt.Sprintf("duplicate key %q", k.Value)})
			continue
		}
		seen[k.Value] = true
		fn(k.Value, k, v)
	}
}

func (w walker) expect(n *yaml.Node, kind yaml.Kind, what, path string) bool {
	if n.Kind == kind {
		return true
	}
	w.mismatch(n, path, what)
	return false
}

func (w walker) mismatch(n *yaml.Node, path, what string) {
	got := n.Value
	switch n.Kind {
	case yaml.MappingNode:
		got = "a mapping"
	case yaml.SequenceNode:
		got = "a list"
	default:
		got = fmt.Sprintf("%q", got)
	}
	w.probs.list = append(w.probs.list, Problem{Path: path, Line: n.Line, Column: n.Column,
		Message: fmt.Sprintf("must be %s, got %s", what, got)})
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f
	}
	return out
}
