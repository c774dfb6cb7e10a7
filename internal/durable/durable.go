// Package durable writes files so that a crash or power cut leaves the old
// contents or the new, never a torn file: write to a temporary file beside
// the target, flush it, rename it into place, flush the directory.
package durable

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteFile replaces path with data (mode applies to the new file).
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return WriteFrom(path, mode, func(w io.Writer) error {
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}

// WriteFrom replaces path with what write writes (mode applies to the new
// file). An error from write, or from any step after it, leaves path as it
// was; write may refuse the data it streamed (a digest that does not
// match) by returning an error.
func WriteFrom(path string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing to remove
	err = write(tmp)
	if err != nil {
		tmp.Close()
		return err // write's own error says what it was writing
	}
	err = tmp.Chmod(mode)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Produce replaces path with a file a tool makes: produce gets a temporary
// path beside path, which does not exist yet, and must leave the new file
// there; it is then flushed and renamed into place. The file keeps the
// mode and contents produce gave it. An error from produce leaves path as
// it was and removes what produce left.
func Produce(path string, produce func(tmp string) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Only the unique name is reserved: the tool creates the file itself,
	// with the mode it always gives it.
	tmp := f.Name()
	f.Close()
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp) // after the rename, nothing to remove
	if err := produce(tmp); err != nil {
		return err
	}
	err = syncPath(tmp)
	if err == nil {
		err = place(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PublishDir renames the directory tmp, complete, to dir: every file and
// directory under tmp is flushed first and dir's parent after, so a power
// cut leaves either no dir or all of it. dir must not exist or be empty;
// on an error it is left as it was, and tmp is left for the caller.
func PublishDir(tmp, dir string) error {
	err := filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err != nil || !(d.Type().IsRegular() || d.IsDir()) {
			return err // symbolic links and devices hold no data to flush
		}
		return syncPath(p)
	})
	if err == nil {
		err = place(tmp, dir)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", dir, err)
	}
	return nil
}

// CreateFile writes a new file (it must not exist) and flushes it; the
// caller flushes the directory once it has written all it needs there.
func CreateFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir flushes a directory, making the renames and creations in it
// durable.
func SyncDir(dir string) error {
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// tempPattern names temporaries beside path: hidden, and recognisable as
// leftovers (".name.tmp-*").
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// TempTarget says which file a temporary file of this package's is being
// written to (beside it), so a scan of a directory can tell a write in
// flight from a stray file.
func TempTarget(path string) (string, bool) {
	base := filepath.Base(path)
	i := strings.LastIndex(base, ".tmp-")
	if !strings.HasPrefix(base, ".") || i <= 1 || i+len(".tmp-") == len(base) {
		return "", false
	}
	return filepath.Join(filepath.Dir(path), base[1:i]), true
}

// place is the one rename into place: the flushed tmp becomes path, and
// the directory is flushed so the rename itself survives a power cut.
func place(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}

// syncPath flushes a file or directory by name (fsync works on a
// read-only descriptor).
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
