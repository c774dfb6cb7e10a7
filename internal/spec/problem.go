package spec

import (
	"fmt"
	"strings"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// ErrInvalid classifies every spec problem, so callers can test with errors.Is.
var ErrInvalid = errdefs.New(errdefs.ErrInvalid, "invalid cluster spec")

// Problem is one thing wrong with a spec, at a YAML path and, once located, a
// line and column of the source file.
type Problem struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	loc := ""
	if p.Line > 0 {
		loc = fmt.Sprintf("%d:%d: ", p.Line, p.Column)
	}
	if p.Path == "" {
		return loc + p.Message
	}
	return fmt.Sprintf("%s%s: %s", loc, p.Path, p.Message)
}

// Problems is every problem found in one pass; it is an error when non-empty.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d problem(s):\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Is lets errors.Is(err, ErrInvalid) match any Problems, and so its class.
func (ps Problems) Is(target error) bool { return target == ErrInvalid || target == errdefs.ErrInvalid }

// problems collects Problems with a little less ceremony at each call site.
type problems struct{ list Problems }

func (c *problems) add(path, format string, args ...any) {
	c.list = append(c.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}
