package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/buildinfo"
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
			cmd.Flags().StringVar(&p.nodeBins, "node-binaries", "", "directory with kubedosd and kubedos-init (default: beside this kubedos binary)")
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

func newBuildCmd(g *globals) *cobra.Command {
	var p paths
	cmd := &cobra.Command{
		Use:   "build SPEC",
		Short: "Manufacture every role's signed, reproducible boot image, offline",
		Long: `Build, offline from the darksite repo, one image per role in SPEC:

  rootfs      mmdebstrap from the locked packages, SOURCE_DATE_EPOCH from the lock,
              kubedosd installed and enabled
  root        reproducible squashfs and its dm-verity hash tree (fixed salt)
  initrd      kubedos-init (Go, static): verity root by roothash, fails closed
  UKI         systemd-stub + kernel + initrd + cmdline (slot, roothash), signed
              with db, beside a signed systemd-boot
  disk        GPT (esp, root-a, verity-a, root-b, verity-b, state, data) raw + qcow2
  manifest    every file's sha256, the inputs, CycloneDX SBOM per role, SLSA v1
              provenance, signed with the artifact key

Outputs go to OUT/<cluster>/<build-id>/; the build-id is derived from the
inputs and an existing build is never overwritten. A role whose inputs did not
change is taken from the role cache. Needs root (mmdebstrap --mode=root).`,
		Example: "  sudo kubedos build examples/local.yaml --keys keys --out out",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, specBytes, err := loadSpecBytes(args[0])
			if err != nil {
				return err
			}
			l, lockBytes, err := readLock(p.lockPath(args[0]))
			if err != nil {
				return err
			}
			ks, err := sign.LoadKeySet(p.keys)
			if err != nil {
				return err
			}
			repo, err := lock.OpenRepo(p.repoPath(lockBytes))
			if err != nil {
				return fmt.Errorf("%w (run kubedos fetch first)", err)
			}
			bins, err := p.nodeBinaries()
			if err != nil {
				return err
			}
			pr := newProgress(g.stderr)
			pr.Step("building cluster %q: %d role(s)", s.Metadata.Name, len(lock.Roles(s)))
			res, err := build.Build(cmd.Context(), build.Options{
				Spec: s, SpecBytes: specBytes, Lock: l, LockBytes: lockBytes, Repo: repo, Keys: ks,
				Kubedosd: filepath.Join(bins, "kubedosd"), Init: filepath.Join(bins, "kubedos-init"),
				Revision: buildinfo.Get().Revision, OutDir: p.out,
				Progress: func(role, step string) { pr.Step("%s: %s", role, step) },
			})
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				return g.writeJSON(map[string]any{"dir": res.Dir, "buildID": res.BuildID, "reused": res.Reused, "built": res.Built})
			}
			switch {
			case res.Reused:
				pr.Step("nothing changed: build %s already exists", res.BuildID)
			case len(res.Built) == 0:
				pr.Step("all roles came from the role cache")
			default:
				pr.Step("built roles: %s", strings.Join(res.Built, ", "))
			}
			fmt.Fprintln(g.stdout, res.Dir)
			return nil
		},
	}
	p.addFlags(cmd, "lock", "keys", "cache", "repo", "out", "node-binaries")
	cmd.AddCommand(newBuildRetireCmd(g))
	return cmd
}

func newVerifyCmd(g *globals) *cobra.Command {
	var p paths
	cmd := &cobra.Command{
		Use:   "verify BUILD-DIR",
		Short: "Check a build offline: signatures, digests, Authenticode, verity, SBOM",
		Long: `Check a build directory offline against the platform's public keys:
the manifest signature (artifact key), every file's sha256 and size, files not
in the manifest, the Authenticode signatures of systemd-boot and each UKI
against the db certificate, each root image against its dm-verity root hash,
and each SBOM against the lock. Every failure is listed with its file.
Exit status: 0 all good, 1 any failure.`,
		Example: "  kubedos verify out/local/3f2a9c…  --keys keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			ks, err := sign.LoadKeySet(p.keys)
			if err != nil {
				return err
			}
			fails, err := build.Verify(cmd.Context(), args[0], ks)
			if err != nil {
				return err
			}
			if g.output == OutputJSON {
				if fails == nil {
					fails = []build.Failure{}
				}
				if err := g.writeJSON(map[string]any{"dir": args[0], "ok": len(fails) == 0, "failures": fails}); err != nil {
					return err
				}
			} else {
				for _, f := range fails {
					fmt.Fprintf(g.stderr, "%s: %s\n", filepath.Join(args[0], f.File), f.Problem)
				}
				if len(fails) == 0 {
					fmt.Fprintf(g.stdout, "%s: verified\n", args[0])
				} else {
					fmt.Fprintf(g.stderr, "%s: %d failure(s)\n", args[0], len(fails))
				}
			}
			if len(fails) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	p.addFlags(cmd, "keys")
	return cmd
}
