package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/buildinfo"
	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/spf13/cobra"
)

func newBuildCmd(g *globals) *cobra.Command {
	var p paths
	var kube, coredns string
	var jobs int
	cmd := &cobra.Command{
		Use:   "build SPEC",
		Short: "Manufacture every role's signed, reproducible boot image, offline",
		Long: `Build, offline from the darksite repo, one image per role in SPEC:

  rootfs      mmdebstrap from the locked packages, SOURCE_DATE_EPOCH from the lock,
              kubedosd installed and enabled; with Kubernetes enabled, each role's
              components (the kube multicall binary, units, containerd's
              configuration, the pause, probe and CoreDNS images: docs/kubernetes.md)
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
			if kube == "" {
				kube = filepath.Join(bins, "kube")
			}
			if coredns == "" {
				// make kube and make coredns both write to bin/.
				coredns = filepath.Join(filepath.Dir(kube), "coredns")
			}
			if jobs < 0 {
				return fmt.Errorf("--jobs %d: want 0 (the number of CPUs) or more", jobs)
			}
			pr := newProgress(g.stderr)
			pr.Step("building cluster %q: %d role(s)", s.Metadata.Name, len(lock.Roles(s)))
			res, err := build.Build(cmd.Context(), build.Options{
				Spec: s, SpecBytes: specBytes, Lock: l, LockBytes: lockBytes, Repo: repo, Keys: ks,
				Kubedosd: filepath.Join(bins, "kubedosd"), Init: filepath.Join(bins, "kubedos-init"),
				Kube: kube, Probe: filepath.Join(bins, "kubedos-probe"), CoreDNS: coredns,
				Revision: buildinfo.Get().Revision, OutDir: p.out, Jobs: jobs,
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
	cmd.Flags().IntVar(&jobs, "jobs", 0, "roles built at once (default: the number of CPUs, at most 4); the base root is made once before them")
	cmd.Flags().StringVar(&coredns, "coredns", "", "CoreDNS (make coredns), its SBOM beside it as FILE.cdx.json; baked into kubelet roles as the cluster DNS image when the spec enables Kubernetes (default: coredns beside the --kube binary)")
	cmd.Flags().StringVar(&kube, "kube", "", "the Kubernetes multicall binary, its SBOM beside it as FILE.cdx.json; read only when the spec enables Kubernetes (default: kube beside kubedosd, where make kube puts it)")
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
