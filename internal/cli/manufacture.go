package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// paths are the on-disk places the manufacturing commands share.
type paths struct {
	lock, keys, cache, repo, out, nodeBins string
}

func (p *paths) addFlags(cmd *cobra.Command, want ...string) {
	for _, w := range want {
		switch w {
		case "lock":
			cmd.Flags().StringVar(&p.lock, "lock", "", "lockfile (default: kubedos.lock beside the spec)")
		case "keys":
			cmd.Flags().StringVar(&p.keys, "keys", "keys", "key directory from kubedos keys init")
		case "cache":
			cmd.Flags().StringVar(&p.cache, "cache", defaultCache(), "package cache and darksite repos")
		case "repo":
			cmd.Flags().StringVar(&p.repo, "repo", "", "darksite repo (default: <cache>/darksite/<lock digest>)")
		case "out":
			cmd.Flags().StringVar(&p.out, "out", "out", "build output store (append-only)")
		case "node-binaries":
			cmd.Flags().StringVar(&p.nodeBins, "node-binaries", "", "directory with kubedosd, kubedos-init and kubedos-probe (default: beside this kubedos binary)")
		}
	}
}

func defaultCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "kubedos")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "kubedos")
	}
	return ".kubedos-cache"
}

// nodeBinaries is where kubedosd and kubedos-init are: --node-binaries, or
// beside this kubedos binary, where make build puts them.
func (p *paths) nodeBinaries() (string, error) {
	if p.nodeBins != "" {
		return p.nodeBins, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Dir(exe), nil
}

func (p *paths) lockPath(specPath string) string {
	if p.lock != "" {
		return p.lock
	}
	return filepath.Join(filepath.Dir(specPath), lock.FileName)
}

// repoPath is the darksite repo of a lock: addressed by the lock's digest so
// a build always finds the repo of exactly its lock.
func (p *paths) repoPath(lockBytes []byte) string {
	if p.repo != "" {
		return p.repo
	}
	return filepath.Join(p.cache, "darksite", sha256Hex(lockBytes)[:16])
}

func loadSpecBytes(path string) (*spec.ClusterSpec, []byte, error) {
	s, err := spec.Load(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	return s, b, err
}

func newLockCmd(g *globals) *cobra.Command {
	var p paths
	var update bool
	cmd := &cobra.Command{
		Use:   "lock SPEC",
		Short: "Resolve every role's Debian packages to exact versions and digests",
		Long: `Resolve the full package closure of every role in SPEC with APT's own solver
against the spec's suite and mirror (verified with Debian's archive keyring),
and write kubedos.lock: name, version, architecture, sha256 and size of every
package, sorted and stable.

An existing lock that covers the spec is left unchanged. A lock that does not
cover it (a package was added, the suite changed) is only replaced with
--update; without it lock fails and names what is missing.`,
		Example: "  kubedos lock examples/local.yaml\n  kubedos lock examples/local.yaml --update",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, _, err := loadSpecBytes(args[0])
			if err != nil {
				return err
			}
			path := p.lockPath(args[0])
			pr := newProgress(g.stderr)
			pr.Step("resolving packages of %d role(s) against %s %s", len(lock.Roles(s)), s.OS.Mirror, s.OS.Suite)
			l, changed, err := lock.Update(cmd.Context(), s, path, update, lock.ResolveOptions{})
			if err != nil {
				return err
			}
			rep := map[string]any{"lock": path, "changed": changed, "packages": len(l.Packages), "sourceDateEpoch": l.SourceDateEpoch}
			if g.output == OutputJSON {
				return g.writeJSON(rep)
			}
			state := "unchanged (it covers the spec)"
			if changed {
				state = "written"
			}
			fmt.Fprintf(g.stdout, "%s %s: %d packages, SOURCE_DATE_EPOCH %d\n", path, state, len(l.Packages), l.SourceDateEpoch)
			return nil
		},
	}
	p.addFlags(cmd, "lock")
	cmd.Flags().BoolVar(&update, "update", false, "re-resolve and replace a lock that does not cover the spec")
	return cmd
}

func newFetchCmd(g *globals) *cobra.Command {
	var p paths
	cmd := &cobra.Command{
		Use:   "fetch SPEC",
		Short: "Download every locked package and lay out the signed darksite repo",
		Long: `Download every .deb in the lock into a content-addressed cache, checking each
one's size and sha256 as it streams (a mismatch is an error naming the package;
nothing unverified enters the cache), then lay out a local APT repository from
exactly those files, signed with the platform's artifact key. Builds install
from it offline.`,
		Example: "  kubedos fetch examples/local.yaml --keys keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			l, lockBytes, err := readLock(p.lockPath(args[0]))
			if err != nil {
				return err
			}
			pr := newProgress(g.stderr)
			repo, err := lock.Fetch(cmd.Context(), l, lock.FetchOptions{
				CacheDir: filepath.Join(p.cache, "debs"), RepoDir: p.repoPath(lockBytes),
				KeyFile: filepath.Join(p.keys, sign.FileSigningKey),
				Progress: func(x lock.Progress) {
					pr.Update("%d/%d packages, %d/%d MB: %s", x.Done, x.Total, x.DoneBytes>>20, x.TotalBytes>>20, x.Package)
					if x.Done == x.Total || x.Done%50 == 0 {
						pr.Step("%d/%d packages in the cache (%d MB)", x.Done, x.Total, x.DoneBytes>>20)
					}
				},
			})
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(map[string]any{"repo": repo.Dir, "packages": repo.Packages, "fingerprint": repo.Fingerprint})
			}
			fmt.Fprintf(g.stdout, "darksite repo %s: %d packages, signed by %s\n", repo.Dir, repo.Packages, repo.Fingerprint)
			return nil
		},
	}
	p.addFlags(cmd, "lock", "keys", "cache", "repo")
	return cmd
}

func readLock(path string) (*lock.Lock, []byte, error) {
	l, err := lock.Read(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (run kubedos lock first)", err)
	}
	b, err := os.ReadFile(path)
	return l, b, err
}
