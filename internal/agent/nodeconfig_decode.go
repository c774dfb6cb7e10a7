package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/kubedos/kubedos/internal/api"
)

// configDecoder walks a node configuration document token by token
// (DecodeNodeConfig).
type configDecoder struct {
	data []byte
	dec  *json.Decoder
	err  *ConfigError
	pos  map[string]int  // field path → byte offset of its key
	bad  map[string]bool // fields already reported as the wrong type
	// stopped: a syntax error was reported; nothing after it can be read.
	stopped bool
}

func (d *configDecoder) problem(offset int, field, format string, args ...any) {
	p := ConfigProblem{Field: field, Message: fmt.Sprintf(format, args...)}
	if offset >= 0 {
		p.Line, p.Column = lineColumn(d.data, offset)
	}
	d.err.Problems = append(d.err.Problems, p)
}

// decode walks the tokens, so that it can name every unknown and duplicate
// key (encoding/json stops at the first and never sees duplicates). A
// syntax error ends the walk: nothing after it can be located.
func (d *configDecoder) decode() *NodeConfig {
	if len(d.data) > api.MaxConfigBytes {
		d.problem(-1, "", "document of %d bytes exceeds %d", len(d.data), api.MaxConfigBytes)
		return nil
	}
	d.dec = json.NewDecoder(bytes.NewReader(d.data))
	cfg := &NodeConfig{}
	start := d.next()
	if !d.object(start, "", skipSeparators(d.data, 0), func(key string, at int) bool {
		switch key {
		case "apiVersion":
			return d.str(&cfg.APIVersion, key, at)
		case "kind":
			return d.str(&cfg.Kind, key, at)
		case "hostname":
			return d.str(&cfg.Hostname, key, at)
		case "sysctls":
			cfg.Sysctls = map[string]string{}
			return d.object(d.next(), key, at, func(k string, at int) bool {
				var v string
				ok := d.str(&v, "sysctls."+k, at)
				cfg.Sysctls[k] = v
				return ok
			})
		default:
			d.problem(at, key, "unknown field (known: %s)", strings.Join(configFields, ", "))
			var skip json.RawMessage
			return d.value(&skip, key)
		}
	}) {
		return nil
	}
	if _, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		d.problem(int(d.dec.InputOffset()), "", "data after the document")
	}
	return cfg
}

// next reads a token, recording a syntax error (and stopping).
func (d *configDecoder) next() json.Token {
	tok, err := d.dec.Token()
	if err != nil {
		d.syntax(err)
		return nil
	}
	return tok
}

func (d *configDecoder) syntax(err error) {
	d.stopped = true
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		d.problem(int(se.Offset), "", "JSON syntax: %v", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		d.problem(len(d.data), "", "JSON syntax: unexpected end of the document")
	default:
		d.problem(int(d.dec.InputOffset()), "", "JSON: %v", err)
	}
}

// object reads the members of an object whose '{' is start (field's value,
// its key at offset at), calling member for each key (duplicates are reported and their values skipped). It
// returns false when decoding must stop.
func (d *configDecoder) object(start json.Token, field string, at int, member func(key string, at int) bool) bool {
	if d.stopped {
		return false
	}
	if delim, ok := start.(json.Delim); !ok || delim != '{' {
		what := "the document"
		if field != "" {
			what = field
		}
		d.problem(at, field, "%s must be a JSON object, got %s", what, tokenKind(start))
		return field != "" && d.skipRest(start)
	}
	seen := map[string]bool{}
	for d.dec.More() {
		at := skipSeparators(d.data, int(d.dec.InputOffset()))
		tok := d.next()
		if d.stopped {
			return false
		}
		key, _ := tok.(string)
		path := key
		if field != "" {
			path = field + "." + key
		}
		if seen[key] {
			d.problem(at, path, "duplicate key (first at %s)", d.where(path))
			var skip json.RawMessage
			if !d.value(&skip, path) {
				return false
			}
			continue
		}
		seen[key] = true
		d.pos[path] = at
		if !member(key, at) {
			return false
		}
	}
	_, err := d.dec.Token() // '}'
	if err != nil {
		d.syntax(err)
		return false
	}
	return true
}

// skipRest skips the rest of a composite value whose first token was read.
func (d *configDecoder) skipRest(start json.Token) bool {
	delim, ok := start.(json.Delim)
	if !ok {
		return true
	}
	if delim != '{' && delim != '[' {
		return true
	}
	for depth := 1; depth > 0; {
		tok := d.next()
		if d.stopped {
			return false
		}
		if dl, ok := tok.(json.Delim); ok {
			if dl == '{' || dl == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return true
}

// value decodes the next value into v.
func (d *configDecoder) value(v any, field string) bool {
	if err := d.dec.Decode(v); err != nil {
		d.syntax(err)
		return false
	}
	return true
}

// str decodes the next value, which must be a JSON string, into s.
func (d *configDecoder) str(s *string, field string, at int) bool {
	var raw json.RawMessage
	if !d.value(&raw, field) {
		return false
	}
	if k := rawKind(raw); k != "a string" || json.Unmarshal(raw, s) != nil {
		hint := ""
		if strings.HasPrefix(field, "sysctls.") && (k == "a number" || k == "a boolean") {
			hint = fmt.Sprintf(" (write %q)", strings.TrimSpace(string(raw)))
		}
		d.problem(at, field, "want a string%s, got %s", hint, k)
		d.bad[field] = true
	}
	return true
}

func (d *configDecoder) where(path string) string {
	l, c := lineColumn(d.data, d.pos[path])
	return fmt.Sprintf("%d:%d", l, c)
}

var (
	// dnsLabel is RFC 1123's: what a hostname without dots may be.
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// sysctlKey: dotted path segments of /proc/sys; no '/', no "..".
	sysctlKey = regexp.MustCompile(`^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$`)
)

// validate checks the rules of a decoded document, all of them.
func (d *configDecoder) validate(cfg *NodeConfig) {
	at := func(path string) int {
		if p, ok := d.pos[path]; ok {
			return p
		}
		return -1
	}
	if cfg.APIVersion != NodeConfigAPIVersion && !d.bad["apiVersion"] {
		d.problem(at("apiVersion"), "apiVersion", "want %q, got %q", NodeConfigAPIVersion, cfg.APIVersion)
	}
	if cfg.Kind != NodeConfigKind && !d.bad["kind"] {
		d.problem(at("kind"), "kind", "want %q, got %q", NodeConfigKind, cfg.Kind)
	}
	if cfg.Hostname != "" && !d.bad["hostname"] && !dnsLabel.MatchString(cfg.Hostname) {
		d.problem(at("hostname"), "hostname", "%q is not a DNS label (lower-case letters, digits and '-', 1 to 63)", cfg.Hostname)
	}
	if len(cfg.Sysctls) > MaxSysctls {
		d.problem(at("sysctls"), "sysctls", "%d parameters, at most %d", len(cfg.Sysctls), MaxSysctls)
	}
	keys := make([]string, 0, len(cfg.Sysctls))
	for k := range cfg.Sysctls {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return at("sysctls."+a) - at("sysctls."+b) })
	for _, k := range keys {
		path := "sysctls." + k
		if !sysctlKey.MatchString(k) || len(k) > 256 {
			d.problem(at(path), path, "not a kernel parameter name (dotted, like net.ipv4.ip_forward)")
		} else if why := sysctlRefusal(k); why != "" {
			d.problem(at(path), path, "%s", why)
			d.err.Problems[len(d.err.Problems)-1].Refused = true
		}
		v := cfg.Sysctls[k]
		if d.bad[path] {
			continue
		}
		if v == "" || len(v) > 4096 || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) && r != '\t' }) {
			d.problem(at(path), path, "value %q must be 1 to 4096 printable characters on one line", v)
		}
	}
}

// lineColumn turns a byte offset into a 1-based line and column (in bytes).
func lineColumn(data []byte, offset int) (int, int) {
	offset = min(max(offset, 0), len(data))
	line := 1 + bytes.Count(data[:offset], []byte("\n"))
	col := offset - bytes.LastIndexByte(data[:offset], '\n')
	return line, col
}

// skipSeparators moves past whitespace and commas to the next token.
func skipSeparators(data []byte, i int) int {
	for i < len(data) && strings.IndexByte(" \t\r\n,", data[i]) >= 0 {
		i++
	}
	return i
}

func tokenKind(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", t)
}

func rawKind(raw json.RawMessage) string {
	switch s := strings.TrimSpace(string(raw)); {
	case s == "null":
		return "null"
	case s == "true" || s == "false":
		return "a boolean"
	case strings.HasPrefix(s, "{"):
		return "an object"
	case strings.HasPrefix(s, "["):
		return "an array"
	case strings.HasPrefix(s, `"`):
		return "a string"
	}
	return "a number"
}
