package lock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/spec"
)

// ErrNotCovered classifies a lock that does not pin everything a spec asks for.
var ErrNotCovered = errors.New("lock does not cover the spec")

// Missing is one requested package a lock lacks.
type Missing struct {
	Role    spec.Role
	Package string // empty when the whole role is absent from the lock
}

// NotCoveredError lists every reason a lock does not cover a spec.
type NotCoveredError struct {
	Changed []string  // source fields (suite, mirror, …) that differ
	Missing []Missing // requested packages not in the lock, by role
}

func (e *NotCoveredError) Error() string {
	var parts []string
	parts = append(parts, e.Changed...)
	byRole := map[spec.Role][]string{}
	var roles []spec.Role
	for _, m := range e.Missing {
		if m.Package == "" {
			parts = append(parts, fmt.Sprintf("role %s is not in the lock", m.Role))
			continue
		}
		if byRole[m.Role] == nil {
			roles = append(roles, m.Role)
		}
		byRole[m.Role] = append(byRole[m.Role], m.Package)
	}
	for _, r := range roles {
		parts = append(parts, fmt.Sprintf("role %s: not locked: %s", r, strings.Join(byRole[r], ", ")))
	}
	return "lock does not cover the spec: " + strings.Join(parts, "; ")
}

// Is lets errors.Is(err, ErrNotCovered) match.
func (e *NotCoveredError) Is(target error) bool { return target == ErrNotCovered }

// Covers reports whether the lock pins every package the spec requests on
// every role it has nodes for, from the same suite, mirror, components and
// architecture. Builds call it so they never install an unpinned package.
// The error is a *NotCoveredError naming everything that is missing.
func (l *Lock) Covers(s *spec.ClusterSpec) error {
	s = spec.WithDefaults(s)
	e := &NotCoveredError{}
	changed := func(field, lock, want string) {
		if lock != want {
			e.Changed = append(e.Changed, fmt.Sprintf("%s is %q in the lock but %q in the spec", field, lock, want))
		}
	}
	changed("suite", l.Suite, s.OS.Suite)
	changed("mirror", normalMirror(l.Mirror), normalMirror(s.OS.Mirror))
	changed("components", strings.Join(l.Components, " "), strings.Join(s.OS.Components, " "))
	changed("architecture", l.Architecture, s.OS.Architecture)
	for _, r := range Roles(s) {
		have, ok := l.Roles[r]
		if !ok {
			e.Missing = append(e.Missing, Missing{Role: r})
			continue
		}
		for _, p := range Requests(s, r) {
			if !slices.Contains(have, p) {
				e.Missing = append(e.Missing, Missing{Role: r, Package: p})
			}
		}
	}
	if len(e.Changed) > 0 || len(e.Missing) > 0 {
		return e
	}
	return nil
}

// Update is the lockfile policy of `kubedos lock`:
//   - no lock at path: resolve and write it (nothing was pinned yet);
//   - update false and the lock covers the spec: return it unchanged;
//   - update false and it does not: an error naming what is missing and
//     telling the operator to re-run with --update, so versions never move
//     behind their back;
//   - update true: re-resolve to the mirror's current versions and write
//     the lock if its content changed.
//
// changed reports whether the file at path was written.
func Update(ctx context.Context, s *spec.ClusterSpec, path string, update bool, opts ResolveOptions) (lock *Lock, changed bool, err error) {
	old, err := Read(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return nil, false, err
	case !update:
		if err := old.Covers(s); err != nil {
			return nil, false, fmt.Errorf("lock: %s: %w; run `kubedos lock --update` to re-resolve", path, err)
		}
		return old, false, nil
	}
	l, err := Resolve(ctx, s, opts)
	if err != nil {
		return nil, false, err
	}
	if old != nil {
		a, errA := old.Marshal()
		b, errB := l.Marshal()
		if errA == nil && errB == nil && string(a) == string(b) {
			return old, false, nil
		}
	}
	if err := l.Write(path); err != nil {
		return nil, false, err
	}
	return l, true, nil
}
