package lock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/spec"
)

// APIVersion and Kind identify a lock document.
const (
	APIVersion = "kubedos.io/v1alpha1"
	Kind       = "Lock"
)

// FileName is the conventional name of the lockfile beside the spec.
const FileName = "kubedos.lock"

// maxLockBytes bounds Read so a hostile or mistaken file cannot exhaust
// memory; a full platform lock is well under a megabyte.
const maxLockBytes = 64 << 20

// ErrInvalid classifies every malformed lockfile.
var ErrInvalid = errdefs.New(errdefs.ErrInvalid, "invalid lock")

// Lock is the resolved, pinned package set of a cluster.
type Lock struct {
	APIVersion   string   `json:"apiVersion"`
	Kind         string   `json:"kind"`
	Suite        string   `json:"suite"`
	Mirror       string   `json:"mirror"`
	Components   []string `json:"components"`
	Architecture string   `json:"architecture"`
	// SourceDateEpoch is the mirror Release file's Date (Unix seconds);
	// builds export it as SOURCE_DATE_EPOCH so the same lock makes the same bytes.
	SourceDateEpoch int64 `json:"sourceDateEpoch"`
	// RequestDigest is "sha256:<hex>" over the package requests the lock
	// was resolved from, so a changed request is visible without a network.
	RequestDigest string    `json:"requestDigest"`
	Packages      []Package `json:"packages"`
	// Roles maps each role to the names of every package in its closure.
	Roles map[spec.Role][]string `json:"roles"`
}

// Package is one pinned .deb.
type Package struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
	// Filename is the pool path relative to the mirror root, as in the
	// archive's Packages index; the darksite repo uses the same path.
	Filename string `json:"filename"`
	// Priority is the archive's override, which often differs from the
	// .deb's own control file (apt says important, the archive required).
	// The darksite index repeats it so `mmdebstrap --variant=required`
	// selects the same set from it as from the mirror.
	Priority string `json:"priority"`
}

// Package returns the locked package of that name.
func (l *Lock) Package(name string) (Package, bool) {
	i, ok := slices.BinarySearchFunc(l.Packages, name, func(p Package, n string) int { return strings.Compare(p.Name, n) })
	if !ok {
		return Package{}, false
	}
	return l.Packages[i], true
}

// Marshal renders the lock canonically: sorted, 2-space indented, with a
// final newline, so the same resolution always gives the same bytes.
func (l *Lock) Marshal() ([]byte, error) {
	c := *l
	c.Components = slices.Clone(l.Components)
	c.Packages = slices.Clone(l.Packages)
	slices.SortFunc(c.Packages, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	c.Roles = make(map[spec.Role][]string, len(l.Roles))
	for r, names := range l.Roles {
		c.Roles[r] = slices.Sorted(slices.Values(names))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	// The file is read by people and diff tools, never embedded in HTML.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("lock: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// Write stores the lock at path through a temporary file and a rename, so
// a crash never leaves a half-written lockfile.
func (l *Lock) Write(path string) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("lock: refusing to write %s: %w", path, err)
	}
	data, err := l.Marshal()
	if err != nil {
		return err
	}
	return durable.WriteFile(path, data, 0o644)
}

// Read decodes a lockfile strictly: unknown fields, trailing data and
// inconsistent content are errors naming the file.
func Read(path string) (*Lock, error) {
	data, err := boundedio.ReadFile(path, maxLockBytes)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("lock: %w: %w", err, ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	l, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("lock: %s: %w", path, err)
	}
	return l, nil
}

func decode(data []byte) (*Lock, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	l := &Lock{}
	if err := dec.Decode(l); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the lock document", ErrInvalid)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	slices.SortFunc(l.Packages, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}

var (
	// Debian policy §5.6.1 (names) and §5.6.12 (versions); anything else
	// in a lock is corruption or an attempt to smuggle a path or option.
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	versionRE = regexp.MustCompile(`^([0-9]+:)?[0-9A-Za-z.+~-]+$`)
	archRE    = regexp.MustCompile(`^[a-z0-9-]+$`)
	hexRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	suiteRE   = regexp.MustCompile(`^[a-z][a-z0-9.-]*$`)
	compRE    = regexp.MustCompile(`^[a-z][a-z0-9-]*(/[a-z][a-z0-9-]*)?$`)
)

// priorities are Debian policy §2.5's, plus the obsolete extra still seen in old suites.
var priorities = []string{"required", "important", "standard", "optional", "extra"}

// validate reports every problem at once.
func (l *Lock) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if l.APIVersion != APIVersion || l.Kind != Kind {
		bad("apiVersion/kind must be %s/%s, got %q/%q", APIVersion, Kind, l.APIVersion, l.Kind)
	}
	if !suiteRE.MatchString(l.Suite) {
		bad("suite %q is not a Debian suite name", l.Suite)
	}
	if err := checkMirror(l.Mirror); err != nil {
		bad("mirror: %v", err)
	}
	if len(l.Components) == 0 {
		bad("components: empty")
	}
	for _, c := range l.Components {
		if !compRE.MatchString(c) {
			bad("component %q is not an archive component", c)
		}
	}
	if !archRE.MatchString(l.Architecture) {
		bad("architecture %q is not a Debian architecture", l.Architecture)
	}
	if l.SourceDateEpoch <= 0 {
		bad("sourceDateEpoch must be positive, got %d", l.SourceDateEpoch)
	}
	if !digestRE.MatchString(l.RequestDigest) {
		bad("requestDigest %q is not sha256:<64 hex>", l.RequestDigest)
	}
	names := map[string]bool{}
	for _, p := range l.Packages {
		if err := p.validate(); err != nil {
			bad("package %q: %v", p.Name, err)
		}
		if names[p.Name] {
			bad("package %q is listed twice", p.Name)
		}
		names[p.Name] = true
	}
	if len(l.Roles) == 0 {
		bad("roles: empty")
	}
	for _, r := range slices.Sorted(maps.Keys(l.Roles)) {
		if !slices.Contains(spec.Roles, r) {
			bad("roles: unknown role %q", r)
		}
		for _, n := range l.Roles[r] {
			if !names[n] {
				bad("roles.%s: package %q is not in packages", r, n)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func (p Package) validate() error {
	switch {
	case !nameRE.MatchString(p.Name):
		return errors.New("not a Debian package name")
	case !versionRE.MatchString(p.Version):
		return fmt.Errorf("version %q is not a Debian version", p.Version)
	case !archRE.MatchString(p.Architecture):
		return fmt.Errorf("architecture %q is not a Debian architecture", p.Architecture)
	case !hexRE.MatchString(p.SHA256):
		return fmt.Errorf("sha256 %q is not 64 lower-case hex digits", p.SHA256)
	case p.Size <= 0:
		return fmt.Errorf("size %d is not positive", p.Size)
	case !slices.Contains(priorities, p.Priority):
		return fmt.Errorf("priority %q is not one of %v", p.Priority, priorities)
	}
	// The filename becomes a path in the repo: it must stay inside pool/.
	f := p.Filename
	if !strings.HasPrefix(f, "pool/") || !strings.HasSuffix(f, ".deb") || filepath.Clean(f) != f ||
		strings.Contains(f, "..") || strings.ContainsAny(f, "\\\x00\n") {
		return fmt.Errorf("filename %q is not a clean pool/…/.deb path", f)
	}
	return nil
}
