package lock

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/spec"
)

// ResolveOptions tune Resolve; the zero value resolves against the spec's
// mirror with Debian's archive keyring.
type ResolveOptions struct {
	// Keyring verifies the mirror's Release file (DebianArchiveKeyring when empty).
	Keyring string
	// TempDir is where the private apt configuration is made (os.TempDir when empty).
	TempDir string
	// AptGet is the apt-get binary ("apt-get" on PATH when empty).
	AptGet string
}

// Resolve asks APT's own solver for the full package closure of every role
// that has nodes in the spec: the suite's Priority: required set (what
// `mmdebstrap --variant=required` installs, which also adds apt), the
// kernel, NodePackages, os.packages, os.rolePackages[role] and the role's
// Kubernetes packages (Requests). Recommends
// are not followed, as mmdebstrap does not follow them. apt verifies the
// mirror's Release file against the keyring; its Date becomes the lock's
// SourceDateEpoch.
func Resolve(ctx context.Context, s *spec.ClusterSpec, opts ResolveOptions) (*Lock, error) {
	s = spec.WithDefaults(s)
	if err := checkSource(s); err != nil {
		return nil, fmt.Errorf("lock: resolve: %w", err)
	}
	keyring := opts.Keyring
	if keyring == "" {
		keyring = DebianArchiveKeyring
	}
	keys, err := os.ReadFile(keyring)
	if err != nil {
		return nil, fmt.Errorf("lock: resolve: archive keyring: %w", err)
	}
	mirror := normalMirror(s.OS.Mirror)
	// The keyring is copied into the private configuration: apt verifies as
	// its unprivileged _apt user, who may not be able to read the original
	// (a keyring under a 0700 directory then fails as a baffling NO_PUBKEY).
	env, err := newAptEnv(opts.TempDir, s.OS.Architecture, map[string][]byte{"etc/archive-keyring.gpg": keys}, opts.AptGet)
	if err != nil {
		return nil, err
	}
	defer env.close()
	sources := fmt.Sprintf("deb [signed-by=%s] %s %s %s\n", env.path("etc/archive-keyring.gpg"), mirror, s.OS.Suite,
		strings.Join(s.OS.Components, " "))
	if err := env.setSources(sources); err != nil {
		return nil, err
	}

	// --error-on=any turns every failed index or signature into a non-zero
	// exit, where plain `apt-get update` would only warn and go on.
	if _, err := env.run(ctx, "update", "-q", "--error-on=any"); err != nil {
		return nil, fmt.Errorf("lock: resolve %s %s: %w", mirror, s.OS.Suite, err)
	}
	rel, err := readRelease(env.listsDir())
	if err != nil {
		return nil, fmt.Errorf("lock: resolve %s %s: %w", mirror, s.OS.Suite, err)
	}
	if rel.Suite != s.OS.Suite && rel.Codename != s.OS.Suite {
		return nil, fmt.Errorf("lock: resolve: %s serves suite %q codename %q, not %q", mirror, rel.Suite, rel.Codename, s.OS.Suite)
	}
	idx, err := readIndexes(env.listsDir(), s.OS.Architecture)
	if err != nil {
		return nil, fmt.Errorf("lock: resolve %s %s: %w", mirror, s.OS.Suite, err)
	}

	l := &Lock{
		APIVersion:      APIVersion,
		Kind:            Kind,
		Suite:           s.OS.Suite,
		Mirror:          mirror,
		Components:      slices.Clone(s.OS.Components),
		Architecture:    s.OS.Architecture,
		SourceDateEpoch: rel.Date.Unix(),
		RequestDigest:   RequestDigest(s),
		Roles:           map[spec.Role][]string{},
	}
	all := map[string]Package{}
	for _, role := range Roles(s) {
		closure, err := resolveRole(ctx, env, idx, mirror, s, role)
		if err != nil {
			return nil, err
		}
		for _, p := range closure {
			if prev, ok := all[p.Name]; ok && prev != p {
				return nil, fmt.Errorf("lock: resolve: package %s resolved to both %s and %s", p.Name, prev.Version, p.Version)
			}
			all[p.Name] = p
			l.Roles[role] = append(l.Roles[role], p.Name)
		}
		slices.Sort(l.Roles[role])
	}
	l.Packages = slices.SortedFunc(maps.Values(all), func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("lock: resolve produced a bad lock: %w", err)
	}
	return l, nil
}

// resolveRole runs apt's solver once for a role and maps every URI it
// would download back to the Packages index stanza it came from.
func resolveRole(ctx context.Context, env *aptEnv, idx *index, mirror string, s *spec.ClusterSpec, role spec.Role) ([]Package, error) {
	requests := Requests(s, role)
	want := map[string]bool{"apt": true}
	for _, n := range idx.required {
		want[n] = true
	}
	for _, n := range requests {
		want[n] = true
	}
	args := []string{"install", "--print-uris", "-qq", "-y", "-o", "Acquire::ForceHash=SHA256"}
	args = append(args, slices.Sorted(maps.Keys(want))...)
	out, err := env.run(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("lock: resolve role %s: %w", role, err)
	}
	uris, err := parsePrintURIs(out)
	if err != nil {
		return nil, fmt.Errorf("lock: resolve role %s: %w", role, err)
	}
	var closure []Package
	names := map[string]bool{}
	for _, u := range uris {
		p, err := idx.lookup(mirror, u)
		if err != nil {
			return nil, fmt.Errorf("lock: resolve role %s: %w", role, err)
		}
		closure = append(closure, p)
		names[p.Name] = true
	}
	// apt quietly substitutes a provider for a virtual package; the lock
	// could then never show the request as covered, so say it now.
	var virtual []string
	for _, n := range requests {
		if !names[n] {
			virtual = append(virtual, n)
		}
	}
	if len(virtual) > 0 {
		return nil, fmt.Errorf("lock: resolve role %s: %w: %s (request a real package that provides it)",
			role, errVirtual, strings.Join(virtual, ", "))
	}
	return closure, nil
}

var errVirtual = errors.New("requested packages are virtual or were not installed by apt")
