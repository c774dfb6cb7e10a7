package build

import (
	"os"
	"path/filepath"
	"runtime"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sparse"
	"golang.org/x/sync/errgroup"
)

// A build directory's files: linked from the role cache, and the
// manifest's digest of each.

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// listFiles lists every regular file under dir, paths relative to it,
// with its digest: from known when it holds the path, else read, one file
// per CPU at a time.
func listFiles(dir string, known map[string]manifest.FileEntry) ([]manifest.FileEntry, error) {
	var rels []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		rels = append(rels, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]manifest.FileEntry, len(rels))
	var g errgroup.Group
	g.SetLimit(runtime.NumCPU())
	for i, rel := range rels {
		if e, ok := known[rel]; ok {
			out[i] = e
			continue
		}
		g.Go(func() (err error) {
			out[i], err = fileEntry(dir, rel)
			return err
		})
	}
	return out, g.Wait()
}

// digestFiles digests the named files of dir, one after the other: it
// runs inside a role's job, beside the other jobs.
func digestFiles(dir string, names []string) ([]manifest.FileEntry, error) {
	out := make([]manifest.FileEntry, 0, len(names))
	for _, name := range names {
		e, err := fileEntry(dir, name)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// fileEntry is the manifest's entry of the file at rel (slash-separated)
// under dir, its holes not read (sparse.Digest).
func fileEntry(dir, rel string) (manifest.FileEntry, error) {
	sum, size, err := sparse.Digest(filepath.Join(dir, filepath.FromSlash(rel)))
	return manifest.FileEntry{Path: rel, SHA256: sum, Size: size}, err
}
