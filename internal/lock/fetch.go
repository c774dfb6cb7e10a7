package lock

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// ErrDigestMismatch classifies a download whose size or sha256 is not the locked one.
var ErrDigestMismatch = errors.New("size or sha256 does not match the lock")

// FetchOptions say where Fetch keeps packages and builds the repository.
type FetchOptions struct {
	// CacheDir is the content-addressed cache: sha256/<hex>.deb.
	CacheDir string
	// RepoDir receives the darksite repository; it is replaced as a whole.
	RepoDir string
	// KeyFile is the platform's artifact signing key: an ed25519 private
	// key in a PKCS#8 PEM block (<keys>/artifact/signing.key).
	KeyFile string
	// Parallel bounds concurrent downloads (4 when zero).
	Parallel int
	// Client does the downloads; the default also understands file:// mirrors.
	Client *http.Client
	// Progress, when set, is called after each package is in the cache.
	// Calls are serialised, so the callback needs no locking of its own.
	Progress func(Progress)
	// DpkgDeb is the dpkg-deb binary ("dpkg-deb" on PATH when empty).
	DpkgDeb string
}

// Progress reports one package arriving in the cache.
type Progress struct {
	Package     string
	Bytes       int64
	Cached      bool // already in the cache and re-verified, not downloaded
	Done, Total int
	DoneBytes   int64
	TotalBytes  int64
}

// Fetch downloads every locked .deb into the cache, verifying each against
// the lock, then lays out and signs the darksite repository at RepoDir.
// Nothing unverified ever enters the cache or the repository.
func Fetch(ctx context.Context, l *Lock, opts FetchOptions) (*Repo, error) {
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("lock: fetch: %w", err)
	}
	if opts.CacheDir == "" || opts.RepoDir == "" || opts.KeyFile == "" {
		return nil, errors.New("lock: fetch: CacheDir, RepoDir and KeyFile are required")
	}
	// Check the outputs first: a bad key or path should fail before minutes of downloads.
	repoDir, err := repoPath(opts.RepoDir)
	if err != nil {
		return nil, err
	}
	key, err := LoadSigningKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	c := newCache(opts.CacheDir, opts.Client)
	if err := c.init(); err != nil {
		return nil, err
	}
	stanzas, err := fetchAll(ctx, c, l, opts)
	if err != nil {
		return nil, err
	}
	return writeRepo(l, c, stanzas, key, repoDir)
}

// fetchAll runs the bounded download pool and reads each package's control
// stanza as soon as it is verified. Every failure is reported, sorted by
// package, so one run shows every bad package.
func fetchAll(ctx context.Context, c *cache, l *Lock, opts FetchOptions) (map[string]stanza, error) {
	workers := opts.Parallel
	if workers <= 0 {
		workers = 4
	}
	var total int64
	for _, p := range l.Packages {
		total += p.Size
	}
	jobs := make(chan Package)
	var (
		mu        sync.Mutex
		stanzas   = map[string]stanza{}
		errs      []error
		done      int
		doneBytes int64
		wg        sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				cached, err := c.get(ctx, l.Mirror, p)
				var st stanza
				if err == nil {
					st, err = debStanza(ctx, opts.DpkgDeb, c.path(p.SHA256), p)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					stanzas[p.Name] = st
					done++
					doneBytes += p.Size
					if opts.Progress != nil {
						opts.Progress(Progress{Package: p.Name, Bytes: p.Size, Cached: cached,
							Done: done, Total: len(l.Packages), DoneBytes: doneBytes, TotalBytes: total})
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, p := range l.Packages {
		select {
		case jobs <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock: fetch: %w", err)
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, fmt.Errorf("lock: fetch: %d of %d packages failed: %w", len(errs), len(l.Packages), errors.Join(errs...))
	}
	return stanzas, nil
}
