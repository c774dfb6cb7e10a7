package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pidfile"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target/qemu"
	"github.com/spf13/cobra"
)

// clusterFlags are shared by cluster up, down and status.
type clusterFlags struct {
	keys, state, build, hubOn string
	timeout                   time.Duration
	// target and hub are deploy's: --target overrides targets.default,
	// --hub names the hub the proxmox VMs enroll with.
	target, hub string
}

func (f *clusterFlags) add(cmd *cobra.Command, withBuild bool) {
	cmd.Flags().StringVar(&f.keys, "keys", "keys", "key directory")
	cmd.Flags().StringVar(&f.state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
	if withBuild {
		cmd.Flags().StringVar(&f.build, "build", "", "build to deploy (required): its directory, or its build-id (or a unique prefix) under out/")
		cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Minute, "give up waiting for every node to enroll after this long")
		cmd.Flags().StringVar(&f.hubOn, "hub-on", HubOnMaster, "where the hub runs once the cluster is up: master (handed to the master's kubedosd) or host (kubedos hub serve on the LAN gateway)")
		_ = cmd.MarkFlagRequired("build")
	}
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

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Bring a whole cluster up on the local QEMU target, inspect it, take it down"}
	cmd.AddCommand(newClusterUpCmd(g, "up"), newClusterStatusCmd(g), newClusterDownCmd(g), newClusterUpgradeCmd(g))
	return cmd
}

// newDeployCmd is `kubedos deploy SPEC`: cluster up on the spec's default
// target, or VMs on Proxmox VE.
func newDeployCmd(g *globals) *cobra.Command {
	cmd := newClusterUpCmd(g, "deploy")
	cmd.Short = "Deploy a build of the spec to its target: qemu (the same as cluster up) or proxmox"
	cmd.Long = "With targets.default qemu (the default), deploy is kubedos cluster up. " + cmd.Long + `

With targets.default proxmox (or --target proxmox), deploy makes one VM per
spec node on the Proxmox VE node targets.proxmox.node through its API, with
the API token in targets.proxmox.tokenFile (USER@REALM!TOKENID=SECRET, a
file private to its owner) and, when set, the API certificate pinned by
targets.proxmox.fingerprint. Needs Proxmox VE 8.4 or later.

  images  each role's qcow2 disk and the OVMF variable store with the
          platform's Secure Boot keys are uploaded once to
          targets.proxmox.importStorage (default local) as import volumes
          named by their SHA-256, which Proxmox checks on upload
  TPM     each new VM gets a TPM 2.0 made here (swtpm's single-file state,
          EK certificate from swtpm's local CA); its EK is registered with
          the hub at --hub before the VM exists, then the state is removed
          here and from the import storage once the VM holds its copy
  VMs     q35, OVMF with those variables (no Microsoft keys), tpmstate0
          v2.0, virtio disk imported from the role's image, NIC on
          targets.proxmox.bridge, serial console, started at once and on
          host boot; name, hub, LAN address and gateway in SMBIOS type 1
          (SKU), as Proxmox VE sets no OEM strings; tags kubedos and
          kubedos-<cluster>; the description records the image
  hub     not started here: run kubedos hub serve with the spec and the
          build where the VMs reach it, and name that address with --hub

Running it again changes nothing. A VMID held by a VM kubedos did not make
for that node is refused; a node's VM that holds another image is destroyed
and recreated (with a new TPM) only with destructive.recreateVMs.
--timeout 0 returns once the VMs run, without waiting for enrollment.`
	cmd.Example = "  kubedos deploy cluster.yaml --build out/local/<build-id> --keys keys" +
		"\n  kubedos deploy cluster.yaml --target proxmox --build out/reference/<build-id> --keys keys --hub 10.0.0.5:7443"
	return cmd
}

func newClusterUpCmd(g *globals, verb string) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   verb + " SPEC",
		Short: "Start the hub and one VM per node, register each VM's EK, and wait until every node enrolls",
		Long: `Bring the cluster of SPEC up on the local QEMU target from a build:

  LAN     networking.lan as one L2 segment: a bridge inside the network
          namespace kubedos-<cluster>, joined to this host by a veth pair
          whose host end carries networking.lan.gateway; the host does not
          forward, so the nodes reach only each other and the gateway
  hub     kubedos hub serve on <gateway>:7443, state in <state>/hub, until
          the master has enrolled with it; then (--hub-on master, the
          default) the hub is handed to the master's kubedosd over its node
          API: state, spec, signed manifest and the CA key, which the master
          seals to its TPM (PCR 7). The master serves the hub on
          <its address>:7443 from then on, across reboots and upgrades, and
          no hub runs on this host; the workers name the master's hub from
          their first boot. --hub-on host keeps the hub on the gateway.
  nodes   one VM per spec node: q35 under TCG, OVMF with the platform's keys and
          Secure Boot enforced, its own swtpm TPM 2.0 (state kept), a
          copy-on-write disk over the role's image, SMBIOS naming the node,
          its hub and its LAN address (topology.nodes[].address), one NIC on
          a tap on the bridge; node API on <address>:7444; serial console in
          <state>/nodes/<name>/serial.log
  EKs     each VM's EK is read before it boots and registered with the hub,
          so only that machine can enroll under its name

Running it again changes nothing: running VMs and the hub are left alone;
once the master keeps the hub, it is started first and the others once
its hub answers.
A node whose disk belongs to another build is only recreated when the spec
sets destructive.recreateVMs. A LAN that overlaps a network the host has
is refused. Needs root (network namespace, swtpm, qemu).`,
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
			case target != spec.TargetQEMU && target != spec.TargetProxmox:
				return fmt.Errorf("target %q is not deployable yet (qemu and proxmox are)", target)
			}
			ks, err := sign.LoadKeySet(f.keys)
			if err != nil {
				return err
			}
			if f.build, err = resolveBuild(f.build, "out"); err != nil {
				return err
			}
			m, err := verifiedManifest(f.build, ks)
			if err != nil {
				return err
			}
			if f.hubOn != HubOnMaster && f.hubOn != HubOnHost {
				return fmt.Errorf("--hub-on %q: want %s or %s", f.hubOn, HubOnMaster, HubOnHost)
			}
			pr := newProgress(g.stderr)
			c := &localCluster{spec: s, specPath: args[0], keys: ks, manifest: m, buildDir: f.build, dir: f.dir(s), pr: pr,
				hubOn: f.hubOn, timeout: f.timeout}
			if target == spec.TargetProxmox {
				if cmd.Flags().Changed("hub-on") {
					return fmt.Errorf("--hub-on is the qemu target's; on proxmox the hub stays where kubedos hub serve runs (--hub)")
				}
				return c.deployProxmox(cmd.Context(), g, f.hub)
			}
			if err := c.up(cmd.Context()); err != nil {
				return err
			}
			nodes, err := c.waitEnrolled(cmd.Context(), f.timeout)
			if nodes != nil {
				if perr := printCluster(g, c, nodes); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	f.add(cmd, true)
	if verb == "deploy" {
		cmd.Flags().StringVar(&f.target, "target", "", "deploy to this target instead of the spec's targets.default: qemu or proxmox")
		cmd.Flags().StringVar(&f.hub, "hub", "", "proxmox: the hub's address as the VMs reach it (host:port of kubedos hub serve); required there")
	}
	return cmd
}

type clusterNode struct {
	api.Node
	VM      string `json:"vm"` // running | stopped
	PID     int    `json:"pid,omitempty"`
	API     string `json:"api,omitempty"` // kubedos node … --node API --name NAME
	Console string `json:"console"`
}

func printCluster(g *globals, c *localCluster, nodes []api.Node) error {
	byName := map[string]api.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	var out []clusterNode
	for _, sn := range c.spec.Topology.Nodes {
		cn := clusterNode{Node: byName[sn.Name], VM: "stopped", Console: filepath.Join(c.nodeDir(sn.Name), "serial.log")}
		cn.Name, cn.Role = sn.Name, string(sn.Role)
		if pid, ok := qemu.Running(c.nodeDir(sn.Name)); ok {
			cn.VM, cn.PID = "running", pid
		}
		if b, err := os.ReadFile(filepath.Join(c.nodeDir(sn.Name), "api.addr")); err == nil {
			cn.API = strings.TrimSpace(string(b))
		}
		out = append(out, cn)
	}
	lan := map[string]any{"up": false}
	if seg, err := c.segment(); err == nil {
		lan = map[string]any{"up": seg.Exists(), "netns": seg.Netns, "gateway": seg.Gateway.String(), "hostInterface": seg.HostIf}
	}
	hubOn := "host"
	if c.hubKeeper != "" {
		hubOn = c.hubKeeper
	}
	if g.output == OutputJSON {
		doc := map[string]any{"cluster": c.spec.Metadata.Name, "hub": c.hubAddr, "hubOn": hubOn, "lan": lan, "nodes": out}
		if c.hubErr != nil {
			doc["hubError"] = c.hubErr.Error()
		}
		return g.writeJSON(doc)
	}
	if lan["up"] == true {
		fmt.Fprintf(g.stdout, "LAN %s: bridge in network namespace %s, host end %s\n", lan["gateway"], lan["netns"], lan["hostInterface"])
	} else {
		fmt.Fprintln(g.stdout, "LAN: not up")
	}
	if c.hubAddr == "" {
		fmt.Fprintf(g.stdout, "cluster %s: hub not running\n", c.spec.Metadata.Name)
	} else {
		fmt.Fprintf(g.stdout, "cluster %s: hub %s on %s (kubedos node list --hub %s --keys %s)\n", c.spec.Metadata.Name, c.hubAddr, hubOn, c.hubAddr, c.keysDir())
	}
	if c.hubErr != nil {
		fmt.Fprintf(g.stdout, "hub not answering: %v\n", c.hubErr)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tVM\tSTATE\tBUILD\tNODE API\tCONSOLE")
	for _, n := range out {
		state := n.State
		switch {
		case state == "" && c.hubErr != nil:
			state = "unknown" // the hub did not answer
		case state == "":
			state = "not enrolled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.VM, state, n.BuildID, n.API, n.Console)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out) > 0 && out[0].API != "" {
		fmt.Fprintf(g.stdout, "reach a node: kubedos node health --node %s --name %s --keys %s\n", out[0].API, out[0].Name, c.keysDir())
	}
	return nil
}

func newClusterStatusCmd(g *globals) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "status SPEC",
		Short: "Show the cluster's VMs and what the hub says of each node",
		Args:  cobra.ExactArgs(1),
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
			c := &localCluster{spec: s, keys: ks, dir: f.dir(s)}
			var nodes []api.Node
			handed, err := c.readHandoff()
			if err != nil {
				return err
			}
			if handed != nil {
				// The master keeps the hub: it answers only while its VM runs.
				c.hubAddr, c.hubKeeper = handed.Addr, handed.Node
				if admin, done, err := c.admin(); err == nil {
					ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
					res, lerr := admin.ListNodes(ctx)
					cancel()
					done()
					if lerr == nil {
						nodes = res.Nodes
					} else {
						c.hubErr = lerr
					}
				}
			} else if addr, err := os.ReadFile(filepath.Join(c.hubDir(), "hub.addr")); err == nil && hubAlive(c.hubDir()) {
				c.hubAddr = strings.TrimSpace(string(addr))
				admin, done, err := c.admin()
				if err != nil {
					return err
				}
				defer done()
				res, err := admin.ListNodes(cmd.Context())
				if err != nil {
					return err
				}
				nodes = res.Nodes
			}
			return printCluster(g, c, nodes)
		},
	}
	f.add(cmd, false)
	return cmd
}

func newClusterDownCmd(g *globals) *cobra.Command {
	var f clusterFlags
	var purge bool
	cmd := &cobra.Command{
		Use:   "down SPEC",
		Short: "Stop every VM, its swtpm and the hub, remove the LAN namespace; --purge also deletes TPMs, disks and hub state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := spec.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c := &localCluster{spec: s, dir: f.dir(s)}
			var errs []error
			for _, n := range s.Topology.Nodes {
				if err := qemu.Stop(c.nodeDir(n.Name)); err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
				}
			}
			if err := pidfile.Stop(filepath.Join(c.hubDir(), "hub.pid"), 5*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("hub: %w", err))
			}
			// Last: the namespace goes with every tap and the veth pair.
			if seg, err := c.segment(); err != nil {
				errs = append(errs, err)
			} else if err := seg.Down(cmd.Context()); err != nil {
				errs = append(errs, fmt.Errorf("LAN: %w", err))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if purge {
				if err := os.RemoveAll(c.dir); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "cluster %s is down (%d VMs and the hub stopped, LAN namespace removed)%s\n", s.Metadata.Name, len(s.Topology.Nodes),
				map[bool]string{true: "; state purged", false: ""}[purge])
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the TPM state, disks and hub state")
	return cmd
}
