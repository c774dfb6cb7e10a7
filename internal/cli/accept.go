package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
)

// acceptFlags are the flags of kubedos cluster accept and seal.
type acceptFlags struct {
	reachFlags
	build      string
	kubeconfig string
	allow      []string
	timeout    time.Duration
	force      bool
	// drill names the node the replacement drill replaces.
	drill        string
	drillTimeout time.Duration
}

const acceptChecksLong = `Every check is reported with its outcome and, when it fails, the node and what:

  attested          every spec node enrolled at the hub, for its spec role, on
                    the image the build (--build) names for its role
  plane P           every plane joined and up on every node, with a WireGuard
                    handshake younger than 3 minutes between the node and the
                    master, seen from both sides
  kubernetes api    (Kubernetes enabled) the API server's /readyz
  kubelet ready     every kubelet node registered and Ready
  kube-system pods  every kube-system pod Running (none is fine)
  probe deployment  the acceptance probe's Deployment with its 2 replicas
  probe service     every probe replica answering through its Service, by
                    the API server's service proxy on the control-plane node
  coredns deployment  CoreDNS's Deployment (kube-system/coredns) with its 2
                    replicas
  cluster dns       from a probe pod (its resolv.conf: the kube-dns Service),
                    kubernetes.default resolves to the API server's Service
                    and probe.kubedos-probe.svc.<domain> to the probe's
  drill             (--drill NODE, run first so every check above sees the
                    cluster it left) the replacement drill on a worker: fence
                    it (hub revokes it, VM stopped; cordoned, drained, Node
                    deleted), replace (its EK retired), destroy its VM with
                    disk and TPM, recreate it from --build with a fresh TPM
                    whose EK is registered first, wait until it enrolls
                    through the gate, its kubelet is Ready and the probe is
                    available again; each step timed. A control-plane or
                    etcd node of an HA cluster (three or more etcd members,
                    the API on a VIP) may be drilled too: no kubelet, but
                    its etcd member healthy again (it removed its stale
                    self and joined the running cluster) and its API server
                    among the API's endpoints. Destructive by design: only
                    the node named, never the master, qemu target only.

Some items may be reported "not checked", which is not a pass: drill (no
--drill given), build (no --build given).
The cluster is accepted "except" such an item only when --allow-unchecked names
it; otherwise the gate fails naming it. Exit 0 when accepted, 2 when a check failed.

The Kubernetes checks use an admin credential the hub issues for this run
(≤ 1 h, audited), or --kubeconfig.`

func (f *acceptFlags) add(cmd *cobra.Command, buildUsage string) {
	f.reachFlags.add(cmd)
	cmd.Flags().StringVar(&f.build, "build", "", buildUsage)
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "reach the API server with this kubeconfig (default: an admin credential from the hub)")
	cmd.Flags().StringSliceVar(&f.allow, "allow-unchecked", nil, "accept the cluster without these unchecked items: "+strings.Join(cluster.Uncheckable, ", "))
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up on the gate's checks after this long (the drill has its own bound)")
	cmd.Flags().StringVar(&f.drill, "drill", "", "run the replacement drill on this worker (or control-plane or etcd node of an HA cluster): it is fenced, destroyed and recreated (needs --build and the key directory)")
	cmd.Flags().DurationVar(&f.drillTimeout, "drill-timeout", 15*time.Minute, "bound on each wait of the drill (enrollment, kubelet Ready, probe available)")
}

// gateTimeout bounds the whole gate: the checks, and the drill's waits
// when there is one.
func (f *acceptFlags) gateTimeout() time.Duration {
	if f.drill == "" {
		return f.timeout
	}
	return f.timeout + 3*f.drillTimeout
}

// config turns the flags into the library's configuration; builds loads
// the build's role images for the attestation check.
func (f *acceptFlags) config(g *globals, path string, s *spec.ClusterSpec, builds bool) (cluster.AcceptConfig, error) {
	cfg := cluster.AcceptConfig{Spec: s, NodeAddrs: f.nodes, AllowUnchecked: f.allow}
	var err error
	if cfg.HubAddr, cfg.ClientTLS, err = f.resolve(s); err != nil {
		return cfg, err
	}
	if f.drill != "" {
		if err := cluster.DrillNodeOK(s, f.drill); err != nil {
			return cfg, err
		}
		if f.build == "" {
			return cfg, fmt.Errorf("--drill %s needs --build: the drill recreates the node from the build", f.drill)
		}
		cf := clusterFlags{keys: f.hub.keys, state: f.state, build: f.build, timeout: f.drillTimeout}
		ccfg, err := cf.loadBuild(path, g.events())
		if err != nil {
			return cfg, err
		}
		ccfg.Cert, ccfg.Key = f.hub.cert, f.hub.key // the drill acts as the operator the gate does
		cfg.DrillNode, cfg.Drill = f.drill, cluster.New(ccfg).Drill
	}
	if f.kubeconfig != "" {
		kc, err := kube.NewFromKubeconfig(f.kubeconfig)
		if err != nil {
			return cfg, fmt.Errorf("--kubeconfig: %w", err)
		}
		cfg.Kube = kc
	}
	if builds && f.build != "" {
		dir, err := resolveBuild(f.build, "out")
		if err != nil {
			return cfg, err
		}
		m, _, err := manifest.Read(filepath.Join(dir, manifest.ManifestFile))
		if err != nil {
			return cfg, fmt.Errorf("--build %s: %w", f.build, err)
		}
		cfg.Builds = cluster.RoleBuilds(m)
	}
	return cfg, nil
}

func newClusterAcceptCmd(g *globals) *cobra.Command {
	var f acceptFlags
	cmd := &cobra.Command{
		Use:   "accept SPEC",
		Short: "Run the acceptance gate (seed 004 §17): attestation, planes, Kubernetes, the probe",
		Long:  "Run every acceptance check of the cluster and report each.\n\n" + acceptChecksLong,
		Example: "  kubedos cluster accept examples/local-k8s.yaml --build out/local-k8s/<build-id> --keys keys\n" +
			"  kubedos cluster accept examples/local-k8s.yaml --build <build-id> --allow-unchecked drill -o json\n" +
			"  kubedos cluster accept examples/local-k8s.yaml --build <build-id> --drill w-1",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			cfg, err := f.config(g, args[0], s, true)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.gateTimeout())
			defer cancel()
			res, err := cluster.Accept(ctx, cfg)
			if res == nil {
				return err
			}
			if g.output == OutputJSON {
				if jerr := g.writeJSON(res); jerr != nil {
					return jerr
				}
			} else {
				printAccept(g.stdout, res)
			}
			if errors.Is(err, cluster.ErrNotAccepted) {
				return exitError{2}
			}
			return err
		},
	}
	f.add(cmd, "build every node must run: its directory or build-id (without it the item \"build\" is not checked)")
	return cmd
}

func newClusterSealCmd(g *globals) *cobra.Command {
	var f acceptFlags
	cmd := &cobra.Command{
		Use:   "seal SPEC --build DIR --keys DIR",
		Short: "Run the acceptance gate and, when it passes, seal the cluster: a signed acceptance record at the hub and beside the build",
		Long: `Run kubedos cluster accept (the same flags and checks) and, only when the
cluster is accepted, make its acceptance record and seal it:

  record      the cluster, the time, each check's result, the unchecked items
              accepted without (--allow-unchecked), every node's name, role,
              EK hash and image from the hub, the build's manifest digest, the
              SHA-256 of the CA certificates (cluster; Kubernetes, etcd and
              front-proxy when the key directory has them), the hub's audit
              chain head and the gate's wall time; with Kubernetes, the
              newest etcd snapshot the hub holds (file, member, time, size,
              SHA-256: kubedos cluster snapshots lists them), or a note that
              it holds none yet
  signature   the artifact key's detached signature, as for manifests
  hub         the hub checks the signature against its artifact key and that
              it holds the named etcd snapshot with that digest, and appends
              the record's digest to its audit chain (cluster.seal; admin
              only)
  files       <build>/acceptance.json and acceptance.sig, which kubedos
              bundle create then carries as the bundle's recovery anchors

A gate that does not accept the cluster writes nothing and sends nothing (exit
2). An existing record is replaced only with --force.

` + acceptChecksLong,
		Example: "  kubedos cluster seal examples/local-k8s.yaml --build out/local-k8s/<build-id> --keys keys --allow-unchecked drill",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			dir, err := resolveBuild(f.build, "out")
			if err != nil {
				return err
			}
			ks, err := sign.LoadKeySet(f.hub.keys)
			if err != nil {
				return err
			}
			cfg, err := f.config(g, args[0], s, false)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.gateTimeout())
			defer cancel()
			res, err := cluster.Seal(ctx, cluster.SealConfig{Accept: cfg, BuildDir: dir, Keys: ks, Force: f.force})
			if res == nil {
				return err
			}
			if g.output == OutputJSON {
				if jerr := g.writeJSON(res); jerr != nil {
					return jerr
				}
			} else {
				if res.Accept != nil {
					printAccept(g.stdout, res.Accept)
				}
				if res.Sealed != nil {
					fmt.Fprintf(g.stdout, "sealed at the hub: audit entry %d (%s), record sha256:%s\n", res.Sealed.Seq, res.Sealed.Hash, res.Sealed.RecordSHA256)
				}
				if res.Record != nil && res.Record.EtcdSnapshot != nil {
					if s := res.Record.EtcdSnapshot; s.None != "" {
						fmt.Fprintf(g.stdout, "etcd snapshot: none named (%s)\n", s.None)
					} else {
						fmt.Fprintf(g.stdout, "etcd snapshot: %s (member %s, %d bytes, sha256 %s)\n", s.Name, s.Member, s.Bytes, s.SHA256)
					}
				}
				if res.RecordPath != "" {
					fmt.Fprintf(g.stdout, "wrote %s and %s\n", res.RecordPath, res.SigPath)
				}
			}
			if errors.Is(err, cluster.ErrNotAccepted) {
				fmt.Fprintln(g.stderr, "kubedos: not sealed: the cluster was not accepted (nothing written, nothing sent)")
				return exitError{2}
			}
			return err
		},
	}
	f.add(cmd, "the build the nodes run: its directory or build-id (required; its manifest is checked with the artifact key)")
	cmd.Flags().BoolVar(&f.force, "force", false, "replace an acceptance record the build directory holds")
	return cmd
}

// printAccept prints one line per check and the verdict.
func printAccept(w io.Writer, r *cluster.AcceptResult) {
	fmt.Fprintf(w, "acceptance gate of cluster %s\n", r.Cluster)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		outcome := c.Outcome
		if outcome == cluster.CheckFailed {
			outcome = "FAILED"
		}
		node := c.Node
		if node == "" {
			node = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", outcome, c.Name, node, oneLine(c.Detail))
	}
	_ = tw.Flush()
	failed := r.Failed()
	switch {
	case len(failed) > 0:
		var names []string
		for _, c := range failed {
			n := c.Name
			if c.Node != "" {
				n += " on " + c.Node
			}
			if c.Outcome == cluster.CheckNotChecked {
				n += " (not checked; --allow-unchecked " + c.Name + " accepts without it)"
			}
			names = append(names, n)
		}
		fmt.Fprintf(w, "NOT accepted: %s\n", strings.Join(names, ", "))
	case len(r.Allowed) > 0:
		fmt.Fprintf(w, "accepted except %s (not checked, allowed by --allow-unchecked)\n", strings.Join(r.Allowed, ", "))
	default:
		fmt.Fprintln(w, "accepted")
	}
	fmt.Fprintf(w, "gate wall time %v\n", r.WallTime.Round(time.Millisecond))
}
