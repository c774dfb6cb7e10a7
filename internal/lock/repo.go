package lock

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
)

// The darksite repository's fixed coordinates.
const (
	RepoSuite     = "kubedos"
	RepoComponent = "main"
	// KeyringName is the binary OpenPGP public keyring at the repo's root,
	// for apt's and mmdebstrap's [signed-by=…].
	KeyringName = "kubedos-archive-keyring.gpg"
)

// Repo is a laid-out, signed darksite repository.
type Repo struct {
	Dir          string // absolute path of the repository root
	Keyring      string // absolute path of KeyringName inside Dir
	Fingerprint  string // OpenPGP fingerprint of the signing key, upper-case hex
	Architecture string
	Packages     int
}

// SourcesLine is the one-line APT source for the repository, for apt.
func (r *Repo) SourcesLine() string {
	return fmt.Sprintf("deb [signed-by=%s] file://%s %s %s", r.Keyring, r.Dir, RepoSuite, RepoComponent)
}

// MmdebstrapSource is the source to give mmdebstrap. It uses apt's copy://
// method: mmdebstrap runs dpkg inside the new root, where a file:// pool
// outside it cannot be reached, so the .debs must be copied in.
func (r *Repo) MmdebstrapSource() string {
	return fmt.Sprintf("deb [signed-by=%s] copy://%s %s %s", r.Keyring, r.Dir, RepoSuite, RepoComponent)
}

// writeRepo lays the repository out in a temporary sibling of dir and
// swaps it into place, so a failed run never leaves a half-written repo.
// Everything in it is a function of the lock and the key alone: sorted
// stanzas, Date = SourceDateEpoch, deterministic signatures.
func writeRepo(l *Lock, c *cache, stanzas map[string]stanza, key ed25519.PrivateKey, abs string) (*Repo, error) {
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("lock: repo %s: %w", abs, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("lock: repo %s: %w", abs, err)
	}
	defer os.RemoveAll(tmp) // gone already once renamed into place
	// Readable by apt's _apt user and by mmdebstrap's unshared sub-uid root.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("lock: repo %s: %w", abs, err)
	}

	var packages strings.Builder
	for i, p := range l.Packages { // sorted by name: Read and Resolve keep it so
		if err := linkOrCopy(c.path(p.SHA256), filepath.Join(tmp, p.Filename)); err != nil {
			return nil, fmt.Errorf("lock: repo: package %s: %w", p.Name, err)
		}
		st, ok := stanzas[p.Name]
		if !ok {
			return nil, fmt.Errorf("lock: repo: package %s: no control stanza", p.Name)
		}
		if i > 0 {
			packages.WriteString("\n")
		}
		packages.WriteString(st.String())
	}
	date := time.Unix(l.SourceDateEpoch, 0).UTC()
	indexRel := fmt.Sprintf("%s/binary-%s/Packages", RepoComponent, l.Architecture)
	release := releaseFile(l, date, indexRel, []byte(packages.String()))

	e, err := archiveEntity(key, date)
	if err != nil {
		return nil, err
	}
	inRelease, releaseGPG, err := signRelease(e, release, date)
	if err != nil {
		return nil, err
	}
	keyring, err := publicKeyring(e)
	if err != nil {
		return nil, err
	}
	dists := filepath.Join(tmp, "dists", RepoSuite)
	files := []struct {
		path string
		data []byte
	}{
		{filepath.Join(dists, indexRel), []byte(packages.String())},
		{filepath.Join(dists, "Release"), release},
		{filepath.Join(dists, "InRelease"), inRelease},
		{filepath.Join(dists, "Release.gpg"), releaseGPG},
		{filepath.Join(tmp, KeyringName), keyring},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return nil, fmt.Errorf("lock: repo: %w", err)
		}
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("lock: repo: %w", err)
		}
	}
	if err := swapDir(tmp, abs); err != nil {
		return nil, fmt.Errorf("lock: repo %s: %w", abs, err)
	}
	return &Repo{Dir: abs, Keyring: filepath.Join(abs, KeyringName), Fingerprint: fingerprint(e),
		Architecture: l.Architecture, Packages: len(l.Packages)}, nil
}

// repoPath makes the repository path absolute and checks it can be used
// in a one-line APT sources entry, which cannot quote these characters.
func repoPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("lock: repo %s: %w", dir, err)
	}
	if strings.ContainsAny(abs, " \t\n\"[]") {
		return "", fmt.Errorf("lock: repo %q: the path must not contain spaces, quotes or brackets", abs)
	}
	return abs, nil
}

func releaseFile(l *Lock, date time.Time, indexRel string, index []byte) []byte {
	sum := sha256.Sum256(index)
	var b strings.Builder
	fmt.Fprintf(&b, "Origin: kubedos\nLabel: kubedos\nSuite: %s\nCodename: %s\n", RepoSuite, RepoSuite)
	fmt.Fprintf(&b, "Date: %s\n", date.Format("Mon, 02 Jan 2006 15:04:05 UTC"))
	fmt.Fprintf(&b, "Architectures: %s\nComponents: %s\n", l.Architecture, RepoComponent)
	fmt.Fprintf(&b, "Description: kubedos darksite repository: Debian %s from %s, as pinned by %s\n", l.Suite, l.Mirror, FileName)
	fmt.Fprintf(&b, "SHA256:\n %s %d %s\n", hex.EncodeToString(sum[:]), len(index), indexRel)
	return []byte(b.String())
}

// linkOrCopy hard-links a verified cache file into the pool (no second copy
// of hundreds of megabytes) and copies when the cache is on another filesystem.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// swapDir replaces dst with src; the old tree is moved aside first and
// removed only after the new one is in place, flushed.
func swapDir(src, dst string) error {
	old := dst + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	err := os.Rename(dst, old)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := durable.PublishDir(src, dst); err != nil {
		if err2 := os.Rename(old, dst); err2 != nil && !errors.Is(err2, fs.ErrNotExist) {
			return errors.Join(err, err2)
		}
		return err
	}
	return os.RemoveAll(old)
}
