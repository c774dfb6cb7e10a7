package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubedos/kubedos/internal/bundle"
	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

func newBundleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Make, check and unpack a build's recovery bundle (rebuild with no network)",
		Long: `A recovery bundle is one file that holds what it takes to rebuild a build's
images on a machine with no network (DESIGN.md §1, seed 004 §18.2 "Total loss"):

  inputs/     the ClusterSpec and kubedos.lock the build was made from
  darksite/   the signed APT repository of exactly the locked packages
  keys/       the public halves of the platform's keys (never a private key)
  bin/        the kubedosd and kubedos-init the build put in its images; for
              a Kubernetes build also the kube multicall binary, its SBOM,
              kubedos-probe, and coredns with its SBOM (kubedos build
              --node-binaries <dir>/bin finds them there)
  build/ID/   the build's signed manifest, provenance and SBOMs (and, with
              --images, its UKIs, roots, verity trees and qcow2 disks)
  kube/       with --kube-sources, what rebuilds the kube binary itself
              offline: src/ the pinned wrapper module, proxy/ a Go module
              proxy of every module file its build reads (go.sum checks
              each): KUBE_MODULE=<dir>/kube/src GOPROXY=file://<dir>/kube/proxy
              bash scripts/kube-build.sh gives the same bytes
  coredns/    with --coredns-sources, the same for the coredns binary:
              COREDNS_MODULE=<dir>/coredns/src
              GOPROXY=file://<dir>/coredns/proxy bash scripts/coredns-build.sh

Its first member, bundle.json, lists every other member with its size and
sha256 and is signed with the artifact key (bundle.sig). verify and extract
check that signature against keys you already hold, then every member.

Rebuilding needs the private db and artifact keys from your key escrow; the
build is reproducible, so it gets the same build-id and the same bytes.`,
	}
	cmd.AddCommand(newBundleCreateCmd(g), newBundleVerifyCmd(g), newBundleExtractCmd(g))
	return cmd
}

func newBundleCreateCmd(g *globals) *cobra.Command {
	var (
		p       paths
		out     string
		images  bool
		kube    string
		kubeSrc string
		coredns string
		dnsSrc  string
	)
	cmd := &cobra.Command{
		Use:   "create BUILD-ID|DIR",
		Short: "Write the recovery bundle of a build",
		Long: `Write the recovery bundle of a build (see kubedos bundle --help). Before a byte
is written, the build's manifest signature is checked with the artifact key, and
the spec, lock, node binaries and records are checked against the manifest's
digests, and for a Kubernetes build the kube binary, kubedos-probe and coredns
against the digests its provenance records (each SBOM must describe its binary),
and with --kube-sources or --coredns-sources every module file against the module
hash the binary's build info or go.sum records: a bundle that would not rebuild
the same build is refused. The darksite
repository is the one kubedos fetch laid out for the build's lock.

The bundle is written beside its final name and renamed when whole; an existing
file is never replaced. The same build bundles to the same bytes.`,
		Example: `  kubedos bundle create 5d3c4952 --keys keys                 # out/<cluster>/5d3c4952….bundle.tar
  kubedos bundle create out/local/5d3c4952… --images --file /media/usb/local.bundle.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			dir, err := resolveBuild(args[0], p.out)
			if err != nil {
				return err
			}
			ks, err := sign.LoadKeySet(p.keys)
			if err != nil {
				return err
			}
			if !ks.Private {
				return fmt.Errorf("keys in %s are a public-only copy: the bundle's index is signed with the artifact key", p.keys)
			}
			lockBytes, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(manifest.LockFile)))
			if err != nil {
				return fmt.Errorf("build %s: %w", dir, err)
			}
			repo := p.repoPath(lockBytes)
			if _, err := lock.OpenRepo(repo); err != nil {
				return fmt.Errorf("%w (the build's darksite repo: pass the --cache or --repo the build used)", err)
			}
			bins, err := p.nodeBinaries()
			if err != nil {
				return err
			}
			if out == "" {
				out = strings.TrimSuffix(filepath.Clean(dir), string(filepath.Separator)) + ".bundle.tar"
			}
			pr := newProgress(g.stderr)
			x, err := bundle.Create(cmd.Context(), bundle.Source{
				BuildDir: dir, RepoDir: repo, BinDir: bins, Kube: kube, KubeModule: kubeSrc, CoreDNS: coredns, CoreDNSModule: dnsSrc,
				Keys: ks, Images: images,
				Progress: func(x bundle.Progress) {
					pr.Update("%d of %d MiB: %s", x.Done>>20, x.Total>>20, x.Path)
				},
			}, out)
			if err != nil {
				return err
			}
			pr.Step("bundle of build %s: %d files, %d MiB", x.BuildID, len(x.Files), x.Size()>>20)
			if g.output == OutputJSON {
				return g.writeJSON(map[string]any{"bundle": out, "buildID": x.BuildID, "cluster": x.Cluster, "files": len(x.Files), "bytes": x.Size(), "images": x.Images, "signingKey": x.SigningKey})
			}
			fmt.Fprintln(g.stdout, out)
			return nil
		},
	}
	p.addFlags(cmd, "keys", "cache", "repo", "out", "node-binaries")
	cmd.Flags().StringVar(&out, "file", "", "bundle to write (default: <build dir>.bundle.tar)")
	cmd.Flags().BoolVar(&images, "images", false, "include the boot images (UKIs, roots, verity trees, qcow2 disks)")
	cmd.Flags().StringVar(&kube, "kube", "", "the Kubernetes multicall binary the build was made with, its SBOM beside it as FILE.cdx.json; read only for a Kubernetes build (default: kube beside the node binaries)")
	cmd.Flags().StringVar(&coredns, "coredns", "", "the CoreDNS binary the build was made with, its SBOM beside it as FILE.cdx.json; read only for a Kubernetes build (default: coredns beside --kube, or beside the node binaries)")
	cmd.Flags().StringVar(&kubeSrc, "kube-sources", "", "the Kubernetes wrapper module the kube binary was built from (kube/ of the kubedos source): carry it and a Go module proxy of what its build reads, from this machine's module cache (about 100 MB)")
	cmd.Flags().StringVar(&dnsSrc, "coredns-sources", "", "the CoreDNS wrapper module the coredns binary was built from (coredns/ of the kubedos source): carry it and a Go module proxy of what its build reads, as --kube-sources (about 40 MB)")
	return cmd
}

// trustedKey is the artifact public key a bundle is checked against: one
// the operator holds, never one read from the bundle.
func trustedKey(keys, pub string) (ed25519.PublicKey, error) {
	if pub != "" {
		return sign.ReadVerifyKey(pub)
	}
	ks, err := sign.LoadKeySet(keys)
	if err != nil {
		return nil, fmt.Errorf("%w (or name the artifact public key with --pubkey)", err)
	}
	return ks.SigningPub, nil
}

func newBundleVerifyCmd(g *globals) *cobra.Command {
	var keys, pub string
	cmd := &cobra.Command{
		Use:   "verify BUNDLE",
		Short: "Check a recovery bundle: the index signature, then every member",
		Long: `Read a recovery bundle once and check it whole: its index is signed by the
trusted artifact key (--keys DIR or --pubkey FILE; never the copy inside the
bundle), and every member is present, listed, a regular file, of the listed
size and sha256. Every bad member is named. Exit status: 0 good, 1 refused.

A sealed build's bundle carries its acceptance record (kubedos cluster seal):
its own signature is checked too, and its recovery anchors are printed — the
record's time, nodes and hub audit chain head, and, for a cluster that runs
etcd, the etcd snapshot it names (file name, member, time, size, SHA-256;
the file itself stays on the master: kubedos cluster snapshots lists them,
kubedos cluster snapshots get copies one off with the same SHA-256) or the
note saying why it names none.`,
		Example: "  kubedos bundle verify out/local/5d3c4952….bundle.tar --keys keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			key, err := trustedKey(keys, pub)
			if err != nil {
				return err
			}
			x, err := bundle.Verify(cmd.Context(), args[0], key)
			return reportBundle(g, args[0], "", x, err)
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "keys", "key directory (its public halves are enough)")
	cmd.Flags().StringVar(&pub, "pubkey", "", "the artifact public key (signing.pub), instead of --keys")
	return cmd
}

func newBundleExtractCmd(g *globals) *cobra.Command {
	var keys, pub, dir string
	cmd := &cobra.Command{
		Use:   "extract BUNDLE --dir DIR",
		Short: "Check and unpack a recovery bundle into a new directory, and say how to rebuild",
		Long: `Unpack a recovery bundle into DIR (which must not exist), checking it as
kubedos bundle verify does while it streams. It is unpacked beside DIR and
renamed into place only when every member passed: a refused bundle leaves
nothing behind. Then rebuild, offline, with the private keys from escrow:

  sudo kubedos build DIR/inputs/cluster.yaml --repo DIR/darksite \
      --node-binaries DIR/bin --keys KEYS --out out

The build is reproducible: it prints the bundle's build-id.`,
		Example: "  kubedos bundle extract local.bundle.tar --dir restore --keys keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			if dir == "" {
				return errors.New("--dir is required: a new directory to unpack into")
			}
			key, err := trustedKey(keys, pub)
			if err != nil {
				return err
			}
			x, err := bundle.Extract(cmd.Context(), args[0], dir, key)
			return reportBundle(g, args[0], dir, x, err)
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "keys", "key directory (its public halves are enough)")
	cmd.Flags().StringVar(&pub, "pubkey", "", "the artifact public key (signing.pub), instead of --keys")
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create and unpack into")
	return cmd
}

func reportBundle(g *globals, file, dir string, x *bundle.Index, err error) error {
	if err != nil && !errors.Is(err, bundle.ErrBad) {
		return err
	}
	if g.output == OutputJSON {
		r := map[string]any{"bundle": file, "ok": err == nil, "error": errString(err)}
		if x != nil {
			r["buildID"], r["cluster"], r["files"], r["bytes"], r["images"] = x.BuildID, x.Cluster, len(x.Files), x.Size(), x.Images
			if a := x.Acceptance; a != nil {
				acc := map[string]any{"time": a.Time, "auditHead": a.AuditHead, "allowedUnchecked": a.Allowed, "nodes": len(a.Nodes)}
				if a.EtcdSnapshot != nil {
					acc["etcdSnapshot"] = a.EtcdSnapshot
				}
				r["acceptance"] = acc
			}
		}
		if dir != "" && err == nil {
			r["dir"] = dir
		}
		if werr := g.writeJSON(r); werr != nil {
			return werr
		}
	} else if err != nil {
		fmt.Fprintln(g.stderr, err)
	} else {
		fmt.Fprintf(g.stdout, "%s: verified: build %s of cluster %s, %d files, %d MiB, signed by %s\n", file, x.BuildID, x.Cluster, len(x.Files), x.Size()>>20, x.SigningKey)
		if a := x.Acceptance; a != nil {
			printAnchors(g.stdout, a)
		}
		if dir != "" {
			spec, repo, bins := bundle.RebuildPaths(dir)
			fmt.Fprintf(g.stdout, "unpacked into %s; rebuild offline with the escrowed private keys:\n  sudo kubedos build %s --repo %s --node-binaries %s --keys KEYS --out out\n", dir, spec, repo, bins)
		}
	}
	if err != nil {
		return exitError{1}
	}
	return nil
}

// printAnchors says what a bundle's acceptance record anchors the cluster
// on: the record itself and, for a cluster that runs etcd, the snapshot
// it names (kept on the master, not in the bundle) or why none.
func printAnchors(w io.Writer, a *manifest.Acceptance) {
	fmt.Fprintf(w, "recovery anchors: the cluster's acceptance record of %s (signed; %d nodes; hub audit chain at entry %d, %s)\n",
		a.Time.Format(time.RFC3339), len(a.Nodes), a.AuditHead.Seq, a.AuditHead.Hash)
	switch s := a.EtcdSnapshot; {
	case s == nil:
	case s.None != "":
		fmt.Fprintf(w, "  etcd snapshot: none named (%s)\n", s.None)
	default:
		rev := ""
		if s.Revision > 0 {
			rev = fmt.Sprintf(", etcd revision %d", s.Revision)
		}
		fmt.Fprintf(w, "  etcd snapshot: %s from member %s, taken %s, %d bytes%s, sha256 %s (kept by the hub on the master, not in the bundle: kubedos cluster snapshots get %s copies it)\n",
			s.Name, s.Member, s.Taken.UTC().Format(time.RFC3339), s.Bytes, rev, s.SHA256, s.Name)
	}
}
