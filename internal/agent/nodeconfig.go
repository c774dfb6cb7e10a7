package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// The node configuration document: small, versioned, strictly decoded. It
// lives on the state partition (ConfigFile) and kubedosd applies it at
// start and on ConfigApply.
const (
	NodeConfigAPIVersion = "kubedos.io/v1alpha1"
	NodeConfigKind       = "NodeConfig"
	// MaxSysctls bounds the kernel parameters one document sets.
	MaxSysctls = 256
)

// NodeConfig is what an operator may change on a running node.
type NodeConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Hostname is the kernel hostname (a DNS label); empty leaves the image's.
	Hostname string `json:"hostname,omitempty"`
	// Sysctls are kernel parameters by dotted name (net.ipv4.ip_forward),
	// values as /proc/sys takes them, written as JSON strings.
	Sysctls map[string]string `json:"sysctls,omitempty"`
}

// EmptyNodeConfig is the configuration of a node never configured.
func EmptyNodeConfig() *NodeConfig {
	return &NodeConfig{APIVersion: NodeConfigAPIVersion, Kind: NodeConfigKind}
}

// ConfigProblem is one thing wrong with a document, where it is.
type ConfigProblem struct {
	Line, Column int // 1-based; 0 when not known
	Field        string
	Message      string
	// Refused: the document asks for what policy forbids (a kernel
	// parameter off the allow-list), not merely a malformed value.
	Refused bool
}

func (p ConfigProblem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", p.Line, p.Column)
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ConfigError is every problem of a document at once.
type ConfigError struct {
	Source   string
	Problems []ConfigProblem
}

func (e *ConfigError) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	for _, p := range e.Problems {
		lines = append(lines, e.Source+":"+p.String())
	}
	lines = append(lines, fmt.Sprintf("%s: %d problem(s)", e.Source, len(e.Problems)))
	return strings.Join(lines, "\n")
}

// Unwrap classes a ConfigError: ErrInvalid, or ErrPolicy (errdefs'
// ErrPermission) when one of its problems is a refusal by policy.
func (e *ConfigError) Unwrap() error {
	for _, p := range e.Problems {
		if p.Refused {
			return ErrPolicy
		}
	}
	return ErrInvalid
}

// configFields are the document's fields, in order.
var configFields = []string{"apiVersion", "kind", "hostname", "sysctls"}

// DecodeNodeConfig strictly decodes and validates a document: an unknown or
// duplicate field, a value of the wrong type, data after the document and
// every rule broken are reported at once with line:column and the field.
// source names the document in errors. It has no side effects.
func DecodeNodeConfig(source string, data []byte) (*NodeConfig, error) {
	d := &configDecoder{data: data, err: &ConfigError{Source: source}, pos: map[string]int{}, bad: map[string]bool{}}
	cfg := d.decode()
	if cfg != nil {
		d.validate(cfg)
	}
	if len(d.err.Problems) > 0 {
		// In document order; problems without a place last.
		slices.SortStableFunc(d.err.Problems, func(a, b ConfigProblem) int {
			if (a.Line == 0) != (b.Line == 0) {
				return b.Line - a.Line
			}
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, d.err
	}
	return cfg, nil
}

// Canonical renders cfg in the one form stored and compared: indented JSON,
// keys in order, map keys sorted, a final newline.
func (cfg *NodeConfig) Canonical() []byte {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return append(b, '\n')
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// unifiedDiff is a unified diff of two canonical documents (go-difflib,
// the same library testify uses), empty when they are equal.
func unifiedDiff(from, to string, a, b []byte) string {
	if bytes.Equal(a, b) {
		return ""
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: splitLines(a), B: splitLines(b),
		FromFile: from, ToFile: to, Context: 3,
	})
	if err != nil {
		return fmt.Sprintf("(diff failed: %v)", err)
	}
	return text
}

// splitLines splits text into lines that keep their newline (difflib's
// SplitLines adds an empty last line to text that ends with one).
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "\n") {
		lines[len(lines)-1] = last + "\n\\ No newline at end of file\n"
	}
	return lines
}
