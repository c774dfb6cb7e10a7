package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

// clusterFlags are shared by cluster up, down, status and upgrade.
type clusterFlags struct {
	keys, state, build, hubOn string
	timeout                   time.Duration
	maxBooting                int
	// target and hub are deploy's: --target overrides targets.default,
	// --hub names the hub the proxmox VMs enroll with.
	target, hub string
	// noConverge: cluster up stops once every node enrolled.
	noConverge bool
}

func (f *clusterFlags) add(cmd *cobra.Command, withBuild bool) {
	cmd.Flags().StringVar(&f.keys, "keys", "keys", "key directory")
	cmd.Flags().StringVar(&f.state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
	if withBuild {
		cmd.Flags().StringVar(&f.build, "build", "", "build to deploy (required): its directory, or its build-id (or a unique prefix) under out/")
		cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Minute, "give up waiting for every node to enroll after this long")
		cmd.Flags().StringVar(&f.hubOn, "hub-on", cluster.HubOnMaster, "where the hub runs once the cluster is up: master (handed to the master's kubedosd) or host (kubedos hub serve on the LAN gateway)")
		_ = cmd.MarkFlagRequired("build")
	}
}

// addTarget adds --target to status and down: a cluster deployed with
// --target is found there again.
func (f *clusterFlags) addTarget(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.target, "target", "", "the target the cluster was deployed to, instead of the spec's targets.default: qemu or proxmox")
}

// dir is the cluster's state directory, absolute: it appears in the
// command lines of the processes it owns, which makes them easy to find.
func (f *clusterFlags) dir(s *spec.ClusterSpec) string {
	d := f.state
	if d == "" {
		d = filepath.Join(".kubedos", "clusters", s.Metadata.Name)
	}
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

// load reads the spec (and, with keys, the key set) into a cluster
// config; events go to ev (nil: none).
func (f *clusterFlags) load(path string, keys bool, ev cluster.Events) (cluster.Config, error) {
	s, err := spec.Load(path)
	if err != nil {
		return cluster.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	cfg := cluster.Config{Spec: s, SpecPath: path, Dir: f.dir(s), HubOn: f.hubOn, Timeout: f.timeout, MaxBooting: f.maxBooting,
		TargetName: f.target, ProxmoxHub: f.hub}
	cfg.Events = ev
	if keys {
		if cfg.Keys, err = sign.LoadKeySet(f.keys); err != nil {
			return cluster.Config{}, err
		}
	}
	return cfg, nil
}

// loadBuild is load with the build resolved and its manifest verified.
func (f *clusterFlags) loadBuild(path string, ev cluster.Events) (cluster.Config, error) {
	cfg, err := f.load(path, true, ev)
	if err != nil {
		return cfg, err
	}
	if f.build, err = resolveBuild(f.build, "out"); err != nil {
		return cfg, err
	}
	cfg.BuildDir = f.build
	cfg.Manifest, err = cluster.VerifiedManifest(f.build, cfg.Keys)
	return cfg, err
}

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Bring a whole cluster up on the local QEMU target, inspect it, take it down"}
	cmd.AddCommand(newClusterUpCmd(g, "up"), newClusterStatusCmd(g), newClusterDownCmd(g), newClusterUpgradeCmd(g),
		newClusterAcceptCmd(g), newClusterSealCmd(g), newClusterSnapshotsCmd(g))
	return cmd
}

// newDeployCmd is `kubedos deploy SPEC`: cluster up on the spec's default
// target, or VMs on Proxmox VE.
func newDeployCmd(g *globals) *cobra.Command {
	cmd := newClusterUpCmd(g, "deploy")
	cmd.Short = "Deploy a build of the spec to its target: qemu (the same as cluster up) or proxmox"
	cmd.Long = "With targets.default qemu (the default), deploy is kubedos cluster up. " + cmd.Long + deployProxmoxLong
	cmd.Example = "  kubedos deploy cluster.yaml --build out/local/<build-id> --keys keys" +
		"\n  kubedos deploy cluster.yaml --target proxmox --build out/reference/<build-id> --keys keys --hub 10.0.0.5:7443"
	return cmd
}

func newClusterUpCmd(g *globals, verb string) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:     verb + " SPEC",
		Short:   "Start the hub and one VM per node, register each VM's EK, and wait until every node enrolls",
		Long:    clusterUpLong,
		Example: "  kubedos cluster up cluster.yaml --build out/local/<build-id> --keys keys",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			target := s.Targets.Default
			if f.target != "" {
				target = f.target
			}
			switch {
			case target == spec.TargetProxmox && verb != "deploy":
				return fmt.Errorf("cluster up runs the local qemu target; %s deploys to proxmox: use kubedos deploy", args[0])
			}
			cfg, err := f.loadBuild(args[0], g.events())
			if err != nil {
				return err
			}
			if target == spec.TargetProxmox && !cmd.Flags().Changed("hub-on") {
				cfg.HubOn = "" // the operator's own kubedos hub serve at --hub
			}
			// The hub outlives this command: a kubedos process of its own.
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Hub = cluster.DetachedHub{Exe: exe}
			c := cluster.New(cfg)
			nodes, err := c.Up(cmd.Context())
			if target == spec.TargetProxmox {
				if perr := printDeployed(g, c.Deployed()); perr != nil && err == nil {
					err = perr
				}
				return err
			}
			if err == nil && !f.noConverge {
				// cluster up ends with a convergence run, recorded at the hub.
				var res *cluster.ConvergeResult
				if res, err = c.ConvergeUp(cmd.Context()); res != nil && res.RecordErr != nil {
					fmt.Fprintf(g.stderr, "kubedos: %v\n", res.RecordErr)
				}
			}
			if nodes != nil {
				rep, rerr := c.Report(cmd.Context(), nodes)
				if rerr != nil {
					return rerr
				}
				if perr := printCluster(g, rep); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	f.add(cmd, true)
	cmd.Flags().IntVar(&f.maxBooting, "max-booting", 0, "qemu: start at most this many VMs at a time (the master first, then batches, each once the previous one enrolled, in the order Kubernetes needs them: etcd, control planes, load balancers, workers, then the rest); 0 starts all at once. For a small host under TCG")
	cmd.Flags().BoolVar(&f.noConverge, "no-converge", false, "stop once every node enrolled, without the final convergence run (kubedos converge runs it later)")
	if verb == "deploy" {
		cmd.Flags().StringVar(&f.target, "target", "", "deploy to this target instead of the spec's targets.default: qemu or proxmox")
		cmd.Flags().StringVar(&f.hub, "hub", "", "proxmox: the hub's address as the VMs reach it (host:port): the operator's kubedos hub serve, or with --hub-on an address of this host where it serves the hub; required there until the hub is handed to the master")
	}
	return cmd
}
