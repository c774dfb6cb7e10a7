package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/upgrade"
)

// upgradeOutcome is what one node's upgrade came to.
type upgradeOutcome struct {
	Node    string             `json:"node"`
	From    string             `json:"fromBuild"`
	To      string             `json:"toBuild"`
	Result  string             `json:"result"` // upgraded, rolled-back, written (no reboot), current (nothing to do)
	Running string             `json:"runningBuild,omitempty"`
	Written *api.UpgradeResult `json:"written,omitempty"`
	Seconds float64            `json:"seconds"`
	Detail  string             `json:"detail,omitempty"`
}

// errRolledBack: the node came back on its old build by itself.
var errRolledBack = errors.New("the new build did not pass its boot check; the node rolled back")

// upgradeTarget is how to reach one node and its hub.
type upgradeTarget struct {
	name     string
	hub      *api.AdminClient
	dialNode func() (*api.NodeClient, func(), error)
}

// upgradeNode assigns the build to the node at the hub, streams the node's
// role image to it, and (with reboot) waits until it runs the new build
// with its boot marked good — or came back on the old one.
func upgradeNode(ctx context.Context, t upgradeTarget, buildDir string, reboot bool, wait time.Duration, pr *progress) (*upgradeOutcome, error) {
	start := time.Now()
	raw, err := os.ReadFile(filepath.Join(buildDir, manifest.ManifestFile))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(buildDir, manifest.SignatureFile))
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", buildDir, err)
	}
	n, err := t.hub.AssignBuild(ctx, t.name, raw, sig)
	if err != nil {
		return nil, fmt.Errorf("hub: assign build %s to %s: %w", m.BuildID, t.name, err)
	}
	img, ok := m.Roles[n.Role]
	if !ok {
		return nil, fmt.Errorf("build %s has no image for role %s", m.BuildID, n.Role)
	}
	out := &upgradeOutcome{Node: t.name, From: n.BuildID, To: img.RoleID}
	pr.Step("%s: the hub accepts build %s (role %s image %s) from it", t.name, m.BuildID, n.Role, img.RoleID)
	cl, done, err := t.dialNode()
	if err != nil {
		return nil, err
	}
	// A node already settled on the build is left alone, so a roll that
	// stopped half-way can be run again without rebooting the nodes it did.
	if v, err := cl.Version(ctx); err != nil {
		done()
		return nil, fmt.Errorf("node %s: %w", t.name, err)
	} else if runsSettled(v, img.RoleID) {
		done()
		out.From, out.Running, out.Result = v.BuildID, v.BuildID, "current"
		out.Seconds = time.Since(start).Seconds()
		pr.Step("%s: already runs build %s, its boot marked good; nothing to write", t.name, img.RoleID)
		return out, nil
	}
	var total int64
	for _, p := range upgrade.Parts {
		if fe, ok := m.File(manifest.RoleFile(n.Role, p)); ok {
			total += fe.Size
		}
	}
	res, err := cl.Upgrade(ctx, raw, sig, reboot, upgrade.Parts, func(part string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(buildDir, manifest.RoleFile(n.Role, part)))
	}, func(part string, sent int64) {
		pr.Update("%s: sending %s (%d of %d MiB)", t.name, part, sent>>20, total>>20)
	})
	done()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", t.name, err)
	}
	out.Written = res
	pr.Step("%s: wrote slot %s and boot entry %s (%d MiB)", t.name, res.Slot, res.Entry, res.Bytes>>20)
	if !reboot {
		out.Result, out.Seconds = "written", time.Since(start).Seconds()
		return out, nil
	}
	pr.Step("%s: rebooting into build %s", t.name, img.RoleID)
	v, err := waitSettled(ctx, t, img.RoleID, wait, pr)
	out.Seconds = time.Since(start).Seconds()
	if err != nil {
		return out, err
	}
	out.Running = v.BuildID
	switch {
	case v.BuildID == img.RoleID:
		out.Result = "upgraded"
		return out, nil
	case v.Boot != nil && slices.Contains(v.Boot.RolledBack, img.RoleID):
		out.Result, out.Detail = "rolled-back", v.Boot.LastCheck
		return out, fmt.Errorf("node %s: %w (running %s again): %s", t.name, errRolledBack, v.BuildID, v.Boot.LastCheck)
	default:
		return out, fmt.Errorf("node %s runs %s, neither the new build %s nor a recorded rollback", t.name, v.BuildID, img.RoleID)
	}
}

// runsSettled: the node runs build and its boot is marked good (not on
// trial, state readable).
func runsSettled(v *api.NodeVersion, build string) bool {
	return v.BuildID == build && v.Boot != nil && v.Boot.Error == "" && !v.Boot.Trial
}

// waitSettled polls the node, through the reboots between, until it runs
// build with its boot marked good, or runs another build with build
// recorded as rolled back. The old build answering before it reboots is
// neither, so a slow shutdown is not mistaken for an outcome.
func waitSettled(ctx context.Context, t upgradeTarget, build string, wait time.Duration, pr *progress) (*api.NodeVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	time.Sleep(3 * time.Second) // the node answers, then reboots after a delay
	var last string
	for {
		v, err := func() (*api.NodeVersion, error) {
			cl, done, err := t.dialNode()
			if err != nil {
				return nil, err
			}
			defer done()
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return cl.Version(c)
		}()
		switch {
		case err != nil:
			last = "unreachable (booting)"
		case v.Boot == nil || v.Boot.Error != "":
			last = "boot state unknown"
		case v.Boot.Trial:
			last = fmt.Sprintf("build %s on trial (%s)", v.BuildID, v.Boot.Entry)
		case v.BuildID == build || slices.Contains(v.Boot.RolledBack, build):
			return v, nil
		default:
			last = fmt.Sprintf("still on build %s (rebooting)", v.BuildID)
		}
		pr.Update("%s: %s", t.name, last)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node %s did not settle within %s (last: %s)", t.name, wait, last)
		case <-time.After(3 * time.Second):
		}
	}
}

func printOutcome(g *globals, o *upgradeOutcome) {
	switch o.Result {
	case "upgraded":
		fmt.Fprintf(g.stdout, "%s: upgraded %s → %s in %.0fs\n", o.Node, o.From, o.To, o.Seconds)
	case "written":
		fmt.Fprintf(g.stdout, "%s: build %s written to slot %s (%s); it boots at the next reboot\n", o.Node, o.To, o.Written.Slot, o.Written.Entry)
	case "current":
		fmt.Fprintf(g.stdout, "%s: already runs build %s; nothing to do\n", o.Node, o.To)
	case "rolled-back":
		fmt.Fprintf(g.stdout, "%s: build %s rolled back to %s after %.0fs: %s\n", o.Node, o.To, o.Running, o.Seconds, o.Detail)
	}
}

func nodeUpgradeCmd(g *globals) *cobra.Command {
	var (
		hc       hubClient
		nodeAddr string
		buildDir string
		outDir   string
		noReboot bool
		wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "upgrade NAME --build BUILD-ID|DIR",
		Short: "Write a signed build to a node's idle A/B slot, reboot into it, wait for it to be marked good",
		Long: `Upgrade one node (DESIGN.md §4). The hub is told the node may run the build
(its signed manifest; admin), then the node's role image — root, verity tree and
UKI, as listed in the manifest — is streamed to the node's API. kubedosd checks
the manifest's signature, every digest and the UKI's Secure Boot signature before
it writes anything, writes only the slot it is not running, adds a boot entry with
3 tries (Boot Loader Specification boot counting) and reboots.

On the new build kubedosd re-attests to the hub and runs its health checks; only
then is the boot marked good. A boot that fails its checks, or never reaches
them, is retried until its tries run out and the node falls back to the old build
by itself. This command waits for either outcome and exits 1 on a rollback.
A node that already runs the build, its boot marked good, is left alone.`,
		Example: `  kubedos node upgrade worker-1 --build out/local/<build-id> --hub 127.0.0.1:7443 --node 127.0.0.1:17444 --keys keys`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			buildDir, err := resolveBuild(buildDir, outDir)
			if err != nil {
				return err
			}
			admin, doneHub, err := hc.admin()
			if err != nil {
				return err
			}
			defer doneHub()
			nc := nodeAPIClient{addr: nodeAddr, name: args[0], keys: hc.keys, cert: hc.cert, key: hc.key}
			o, err := upgradeNode(cmd.Context(), upgradeTarget{name: args[0], hub: admin, dialNode: nc.dial}, buildDir, !noReboot, wait, newProgress(g.stderr))
			if o != nil {
				if g.output == OutputJSON {
					_ = g.writeJSON(o)
				} else {
					printOutcome(g, o)
				}
			}
			return err
		},
	}
	hc.addFlags(cmd)
	cmd.Flags().StringVar(&nodeAddr, "node", "", "node API address host:port (default NAME:7444)")
	cmd.Flags().StringVar(&buildDir, "build", "", "build to install: its directory, or its build-id (or a unique prefix) under --out")
	cmd.Flags().StringVar(&outDir, "out", "out", "where kubedos build wrote its builds (for --build BUILD-ID)")
	cmd.Flags().BoolVar(&noReboot, "no-reboot", false, "write the idle slot and its boot entry, but do not reboot")
	cmd.Flags().DurationVar(&wait, "wait", 20*time.Minute, "how long to wait for the node to settle after the reboot")
	return cmd
}

func nodeRollbackCmd(g *globals) *cobra.Command {
	var (
		c        nodeAPIClient
		noReboot bool
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Boot a node's other A/B slot next (with tries, so a failed rollback comes back)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nodeCall(cmd, g, &c, func(ctx context.Context, cl *api.NodeClient) error {
				r, err := cl.Rollback(ctx, !noReboot)
				if err != nil {
					return err
				}
				if g.output == OutputJSON {
					return g.writeJSON(r)
				}
				fmt.Fprintf(g.stdout, "%s: next boot is build %s in slot %s (%s)", r.Node, r.Build, r.Slot, r.Entry)
				if r.Rebooting {
					fmt.Fprint(g.stdout, "; rebooting now")
				}
				fmt.Fprintln(g.stdout)
				return nil
			})
		},
	}
	c.addFlags(cmd, time.Minute)
	cmd.Flags().BoolVar(&noReboot, "no-reboot", false, "only switch the next boot")
	return cmd
}

func newClusterUpgradeCmd(g *globals) *cobra.Command {
	var (
		f    clusterFlags
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "upgrade SPEC --build DIR",
		Short: "Upgrade the local cluster's nodes one at a time, stopping at the first failure",
		Long: `Roll a build through the cluster's nodes in spec order, one at a time, as
kubedos node upgrade does for one: a node must come up on the new build with its
boot marked good before the next starts. The first failure (refused payload,
rollback, timeout) stops the roll; the nodes not reached keep their build. A
node already running the build with its boot marked good is skipped, so after
fixing what stopped a roll, running it again continues where it stopped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			ks, err := sign.LoadKeySet(f.keys)
			if err != nil {
				return err
			}
			if f.build, err = resolveBuild(f.build, "out"); err != nil {
				return err
			}
			if _, err := verifiedManifest(f.build, ks); err != nil {
				return err
			}
			c := &localCluster{spec: s, keys: ks, dir: f.dir(s)}
			hubAddr, err := os.ReadFile(filepath.Join(c.hubDir(), "hub.addr"))
			if err != nil {
				return fmt.Errorf("cluster %s is not up here (no hub address): %w", s.Metadata.Name, err)
			}
			c.hubAddr = strings.TrimSpace(string(hubAddr))
			admin, doneHub, err := c.admin()
			if err != nil {
				return err
			}
			defer doneHub()
			pr := newProgress(g.stderr)
			names := make([]string, len(s.Topology.Nodes))
			for i, sn := range s.Topology.Nodes {
				names[i] = sn.Name
			}
			outs, failed := rollUpgrade(cmd.Context(), names, func(ctx context.Context, name string) (*upgradeOutcome, error) {
				addr, err := os.ReadFile(filepath.Join(c.nodeDir(name), "api.addr"))
				if err != nil {
					return nil, fmt.Errorf("node %s has no API address here: %w", name, err)
				}
				nc := nodeAPIClient{addr: strings.TrimSpace(string(addr)), name: name, keys: f.keys}
				return upgradeNode(ctx, upgradeTarget{name: name, hub: admin, dialNode: nc.dial}, f.build, true, wait, pr)
			}, func(o *upgradeOutcome) {
				if g.output != OutputJSON {
					printOutcome(g, o)
				}
			})
			if g.output == OutputJSON {
				_ = g.writeJSON(map[string]any{"nodes": outs, "error": errString(failed)})
			}
			return failed
		},
	}
	f.add(cmd, true)
	cmd.Flags().DurationVar(&wait, "wait", 20*time.Minute, "how long to wait for each node to settle after its reboot")
	return cmd
}

// rollUpgrade upgrades the nodes in order, one at a time, and stops at the
// first failure: the nodes after it are not touched. Every outcome reached,
// the failing one included, is reported.
func rollUpgrade(ctx context.Context, names []string, one func(context.Context, string) (*upgradeOutcome, error), report func(*upgradeOutcome)) ([]*upgradeOutcome, error) {
	var outs []*upgradeOutcome
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return outs, fmt.Errorf("stopped before %s: %w", name, err)
		}
		o, err := one(ctx, name)
		if o != nil {
			outs = append(outs, o)
			report(o)
		}
		if err != nil {
			return outs, fmt.Errorf("stopped at %s: %w", name, err)
		}
	}
	return outs, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// printBootState adds the A/B lines to kubedos node version.
func printBootState(w io.Writer, b *api.BootState) {
	if b == nil {
		return
	}
	state := "marked good"
	if b.Trial {
		state = "on trial (not marked good yet)"
	}
	fmt.Fprintf(w, "boot:      %s, %s\n", b.Entry, state)
	if b.OtherSlot != "" {
		fmt.Fprintf(w, "other slot: build %s (kubedos node rollback boots it)\n", b.OtherSlot)
	}
	for _, r := range b.RolledBack {
		fmt.Fprintf(w, "rolled back: build %s ran out of boot tries\n", r)
	}
	if b.LastCheck != "" {
		fmt.Fprintf(w, "last failed boot check: %s\n", b.LastCheck)
	}
	if b.Error != "" {
		fmt.Fprintf(w, "boot state: %s\n", b.Error)
	}
}
