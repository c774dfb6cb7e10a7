package sign

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// staging is a temporary directory beside a destination, where a whole set of
// files is written and synced before being moved into place, so a crash or
// an error leaves either nothing or the complete set.
type staging struct{ dir string }

func newStaging(dest string) (*staging, error) {
	parent := filepath.Dir(filepath.Clean(dest))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", parent, err)
	}
	dir, err := os.MkdirTemp(parent, ".kubedos-keys-*")
	if err != nil {
		return nil, fmt.Errorf("staging beside %s: %w", dest, err)
	}
	return &staging{dir: dir}, nil
}

// cleanup removes whatever is left of the staging directory; after a
// successful commit that is an empty directory or nothing.
func (s *staging) cleanup() { _ = os.RemoveAll(s.dir) }

// write creates rel (slash-separated) with mode, its directories 0700, and
// syncs it. O_EXCL: a staging directory is only ever written once per file.
func (s *staging) write(rel string, data []byte, mode os.FileMode) error {
	path := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", rel, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", rel, err)
	}
	return nil
}

// refuseExisting fails, naming the first one found, if any of files or
// subdirs (relative, slash-separated) already exists under dest.
func refuseExisting(dest string, files, subdirs []string) error {
	for _, rel := range append(append([]string{}, files...), subdirs...) {
		p := filepath.Join(dest, filepath.FromSlash(rel))
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w; refusing to overwrite", p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// commit moves the staged set into dest. When dest is absent or empty this
// is one rename: all or nothing even across a crash. When dest already holds
// unrelated files, each subdirectory is renamed in turn (rename never
// replaces an existing directory here: os.Rename refuses), and an error
// moves the earlier ones back; only a crash between those renames can leave
// some subdirectories without the others, and LoadKeySet then names what is
// missing.
func (s *staging) commit(dest string, subdirs []string) error {
	if err := syncDir(s.dir, subdirs); err != nil {
		return err
	}
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("check %s: %w", dest, err)
	case !fi.IsDir():
		return fmt.Errorf("%s: %w and is not a directory", dest, ErrExists)
	default:
		// os.Remove on a directory is rmdir: it only succeeds when empty.
		if err := os.Remove(dest); err != nil {
			return s.commitEach(dest, subdirs)
		}
	}
	if err := os.Rename(s.dir, dest); err != nil {
		return fmt.Errorf("move keys into %s: %w", dest, err)
	}
	return syncPath(filepath.Dir(filepath.Clean(dest)))
}

func (s *staging) commitEach(dest string, subdirs []string) error {
	var moved []string
	for _, sub := range subdirs {
		from, to := filepath.Join(s.dir, sub), filepath.Join(dest, sub)
		if err := os.Rename(from, to); err != nil {
			for _, m := range moved {
				_ = os.Rename(filepath.Join(dest, m), filepath.Join(s.dir, m))
			}
			return fmt.Errorf("move %s into place: %w", to, err)
		}
		moved = append(moved, sub)
	}
	return syncPath(dest)
}

// syncDir syncs dir and its subdirectories so renamed entries are durable.
func syncDir(dir string, subdirs []string) error {
	for _, sub := range subdirs {
		if err := syncPath(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	return syncPath(dir)
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
