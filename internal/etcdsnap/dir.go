package etcdsnap

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrBadName is a snapshot name that is not etcd-<UTC time>-<member>.db:
// nothing is looked up for it (no path leaves the directory).
var ErrBadName = errors.New("not a snapshot name (etcd-<UTC time>-<member>.db)")

// Dir is a directory of kept snapshots as the hub answers for it. List
// remembers each file's digest by its name, size and modification time,
// so listing again hashes only files written since: a reader listing 24
// snapshots must not make the master read gigabytes every time. Check
// hashes one file afresh, for a record that names it. One call at a time,
// so concurrent callers cannot multiply the reads either.
type Dir struct {
	path string
	mu   sync.Mutex
	sums map[string]fileSum
}

type fileSum struct {
	size int64
	mod  time.Time
	sha  string
	rev  int64
}

// NewDir is the snapshots kept in path (which need not exist yet).
func NewDir(path string) *Dir {
	return &Dir{path: path, sums: map[string]fileSum{}}
}

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// List is the kept snapshots, newest first; other files are ignored, and
// a directory not made yet holds none.
func (d *Dir) List() ([]Snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ents, err := os.ReadDir(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Snapshot
	seen := map[string]bool{}
	for _, e := range ents {
		s, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, err
		}
		seen[s.Name] = true
		if c, ok := d.sums[s.Name]; ok && c.size == fi.Size() && c.mod.Equal(fi.ModTime()) {
			s.Bytes, s.SHA256, s.Revision = c.size, c.sha, c.rev
			out = append(out, s)
			continue
		}
		if s, err = d.hash(s); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	for name := range d.sums {
		if !seen[name] {
			delete(d.sums, name)
		}
	}
	slices.SortFunc(out, func(a, b Snapshot) int { return b.Taken.Compare(a.Taken) })
	return out, nil
}

// Check is the snapshot of that name, its digest computed now from its
// bytes. A name that is not a snapshot's wraps ErrBadName; one not kept
// wraps fs.ErrNotExist.
func (d *Dir) Check(name string) (Snapshot, error) {
	s, ok := parseName(name)
	if !ok {
		return Snapshot{}, fmt.Errorf("%q: %w", clip(name), ErrBadName)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hash(s)
}

// Open is the snapshot of that name with its digest computed now, and its
// file open at the start: the bytes a caller reads are the ones hashed,
// whatever the keeper writes or prunes meanwhile (it replaces files by
// rename, never in place). Errors as Check's. The caller closes the file.
func (d *Dir) Open(name string) (Snapshot, io.ReadCloser, error) {
	s, ok := parseName(name)
	if !ok {
		return Snapshot{}, nil, fmt.Errorf("%q: %w", clip(name), ErrBadName)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.open(s)
	if err != nil {
		return Snapshot{}, nil, err
	}
	if s, err = d.sum(s, f); err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return Snapshot{}, nil, err
	}
	return s, f, nil
}

// hash fills in s's size and digest from its file and remembers them.
func (d *Dir) hash(s Snapshot) (Snapshot, error) {
	f, err := d.open(s)
	if err != nil {
		return Snapshot{}, err
	}
	defer f.Close()
	return d.sum(s, f)
}

// open is s's file: a regular file, not a link.
func (d *Dir) open(s Snapshot) (*os.File, error) {
	p := filepath.Join(d.path, s.Name)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", p)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sum reads f (s's open file) to its end for s's size and digest and
// remembers them.
func (d *Dir) sum(s Snapshot, f *os.File) (Snapshot, error) {
	fi, err := f.Stat()
	if err != nil {
		return Snapshot{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if n > MaxBytes {
		return Snapshot{}, fmt.Errorf("%s: larger than %d bytes", f.Name(), int64(MaxBytes))
	}
	s.Bytes, s.SHA256, s.Revision = n, hex.EncodeToString(h.Sum(nil)), Revision(f.Name())
	d.sums[s.Name] = fileSum{size: n, mod: fi.ModTime(), sha: s.SHA256, rev: s.Revision}
	return s, nil
}

// parseName is the snapshot a kept file's name describes (no size or
// digest yet).
func parseName(name string) (Snapshot, bool) {
	m := fileRE.FindStringSubmatch(name)
	if m == nil {
		return Snapshot{}, false
	}
	t, err := time.Parse(timeLayout, m[1])
	if err != nil {
		return Snapshot{}, false
	}
	return Snapshot{Name: name, Member: m[2], Taken: t}, true
}

// ValidName reports whether name is a kept snapshot's name.
func ValidName(name string) bool {
	_, ok := parseName(name)
	return ok
}
