package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target/qemu"
	"github.com/spf13/cobra"
)

// The only address a node's isolated NIC reaches; QEMU forwards it to the
// hub on the host's loopback.
const hubAddrInGuest = "10.0.2.100:7443"

// clusterFlags are shared by cluster up, down and status.
type clusterFlags struct {
	keys, state, build string
	timeout            time.Duration
}

func (f *clusterFlags) add(cmd *cobra.Command, withBuild bool) {
	cmd.Flags().StringVar(&f.keys, "keys", "keys", "key directory")
	cmd.Flags().StringVar(&f.state, "state", "", "cluster state directory (default .kubedos/clusters/<cluster>)")
	if withBuild {
		cmd.Flags().StringVar(&f.build, "build", "", "build directory to deploy (required)")
		cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Minute, "give up waiting for every node to enroll after this long")
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
	cmd.AddCommand(newClusterUpCmd(g, "up"), newClusterStatusCmd(g), newClusterDownCmd(g))
	return cmd
}

// newDeployCmd is `kubedos deploy SPEC`: cluster up on the spec's default target.
func newDeployCmd(g *globals) *cobra.Command {
	cmd := newClusterUpCmd(g, "deploy")
	cmd.Short = "Deploy a build of the spec to its target (qemu: the same as cluster up)"
	return cmd
}

func newClusterUpCmd(g *globals, verb string) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   verb + " SPEC",
		Short: "Start the hub and one VM per node, register each VM's EK, and wait until every node enrolls",
		Long: `Bring the cluster of SPEC up on the local QEMU target from a build:

  hub     kubedos hub serve on 127.0.0.1 (a free port), state in <state>/hub
  nodes   one VM per spec node: q35 under TCG, OVMF with the platform's keys and
          Secure Boot enforced, its own swtpm TPM 2.0 (state kept), a
          copy-on-write disk over the role's image, SMBIOS naming the node and
          its hub, one NIC on an isolated user-mode network that reaches only
          the hub; serial console in <state>/nodes/<name>/serial.log
  EKs     each VM's EK is read before it boots and registered with the hub,
          so only that machine can enroll under its name

Running it again changes nothing: running VMs and the hub are left alone.
A node whose disk belongs to another build is only recreated when the spec
sets destructive.recreateVMs. Needs root (swtpm, qemu).`,
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
			if s.Targets.Default != spec.TargetQEMU {
				return fmt.Errorf("only the qemu target is deployable today; %s sets targets.default %q", args[0], s.Targets.Default)
			}
			ks, err := sign.LoadKeySet(f.keys)
			if err != nil {
				return err
			}
			m, err := verifiedManifest(f.build, ks)
			if err != nil {
				return err
			}
			pr := newProgress(g.stderr)
			c := &localCluster{spec: s, specPath: args[0], keys: ks, manifest: m, buildDir: f.build, dir: f.dir(s), pr: pr}
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
	return cmd
}

// localCluster is a spec's cluster on this machine.
type localCluster struct {
	spec     *spec.ClusterSpec
	specPath string
	keys     *sign.KeySet
	manifest *build.Manifest
	buildDir string
	dir      string
	pr       *progress
	hubAddr  string
}

func (c *localCluster) keysDir() string {
	if c.keys == nil {
		return "keys"
	}
	return c.keys.Dir
}

func (c *localCluster) hubDir() string             { return filepath.Join(c.dir, "hub") }
func (c *localCluster) nodeDir(name string) string { return filepath.Join(c.dir, "nodes", name) }

func (c *localCluster) up(ctx context.Context) error {
	if err := c.startHub(ctx); err != nil {
		return err
	}
	admin, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	vars, err := enrolledVars(c.keys)
	if err != nil {
		return err
	}
	for _, n := range c.spec.Topology.Nodes {
		if err := c.startNode(ctx, admin, n, vars); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// startHub starts `kubedos hub serve` detached, unless it is running.
func (c *localCluster) startHub(ctx context.Context) error {
	pidFile, addrFile := filepath.Join(c.hubDir(), "hub.pid"), filepath.Join(c.hubDir(), "hub.addr")
	if addr, err := os.ReadFile(addrFile); err == nil && pidAlive(pidFile) {
		c.hubAddr = strings.TrimSpace(string(addr))
		c.pr.Step("hub already running on %s", c.hubAddr)
		return nil
	}
	if err := os.MkdirAll(c.hubDir(), 0o700); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.hubAddr = lis.Addr().String()
	lis.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(c.hubDir(), "hub.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	cmd := exec.Command(exe, "hub", "serve", abs(c.specPath), "--build", abs(c.buildDir), "--keys", abs(c.keys.Dir),
		"--state", c.hubDir(), "--listen", c.hubAddr)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this command
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hub: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(addrFile, []byte(c.hubAddr+"\n"), 0o600); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("tcp", c.hubAddr); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) || !pidAlive(pidFile) {
			return fmt.Errorf("hub did not start; see %s", filepath.Join(c.hubDir(), "hub.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.pr.Step("hub listening on %s (state %s)", c.hubAddr, c.hubDir())
	return nil
}

func (c *localCluster) admin() (*api.AdminClient, func(), error) {
	hc := hubClient{addr: c.hubAddr, keys: c.keys.Dir}
	return hc.admin()
}

// startNode registers the VM's EK and starts it, unless it is running.
func (c *localCluster) startNode(ctx context.Context, admin *api.AdminClient, n spec.Node, vars []byte) error {
	dir := c.nodeDir(n.Name)
	if _, ok := qemu.Running(dir); ok {
		c.pr.Step("%s: already running", n.Name)
		return nil
	}
	rm, ok := c.manifest.Roles[string(n.Role)]
	if !ok {
		return fmt.Errorf("build %s has no image for role %s", c.manifest.BuildID, n.Role)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base, err := filepath.Abs(filepath.Join(c.buildDir, "roles", string(n.Role), build.FileDiskQcow2))
	if err != nil {
		return err
	}
	disk, marker := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "image")
	if prev, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(prev)) != rm.RoleID {
		if !c.spec.Destructive.RecreateVMs {
			return fmt.Errorf("its disk holds image %s, the build has %s: recreating the VM destroys its data; set destructive.recreateVMs to allow it (upgrades go through kubedos node upgrade)",
				strings.TrimSpace(string(prev)), rm.RoleID)
		}
		c.pr.Step("%s: recreating the disk for image %s (destructive.recreateVMs)", n.Name, rm.RoleID)
		_ = os.Remove(disk)
	}
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk).CombinedOutput(); err != nil {
			return fmt.Errorf("disk: %w: %s", err, out)
		}
		if err := os.WriteFile(marker, []byte(rm.RoleID+"\n"), 0o644); err != nil {
			return err
		}
	}
	apiAddr, err := nodeAPIAddr(dir)
	if err != nil {
		return err
	}
	ek, err := qemu.ReadEK(ctx, dir)
	if err != nil {
		return err
	}
	hash := attest.EKHash(ek)
	if err := admin.RegisterEK(ctx, n.Name, hash); err != nil {
		return fmt.Errorf("register EK with the hub: %w", err)
	}
	err = qemu.StartDetached(ctx, qemu.VMConfig{Name: "kubedos-" + n.Name, Dir: dir, Disk: disk, Vars: vars,
		MemoryMiB: n.MemoryMiB, CPUs: n.CPUs, Reboot: true,
		UUID: build.DerivedUUID(c.spec.Metadata.Name, n.Name), Serial: fmt.Sprintf("kubedos-%d", n.VMID),
		OEMStrings: []string{"kubedos.name=" + n.Name, "kubedos.hub=" + hubAddrInGuest},
		GuestFwd:   []qemu.Forward{{Guest: hubAddrInGuest, Host: c.hubAddr}},
		HostFwd:    []string{"tcp:" + apiAddr + "-:7444"}})
	if err != nil {
		return err
	}
	c.pr.Step("%s: started (%s, EK %s…); node API on %s; console %s", n.Name, n.Role, hash[:16], apiAddr, filepath.Join(dir, "serial.log"))
	return nil
}

// nodeAPIAddr is the loopback address forwarded to a node's API, chosen
// once per node and kept in its directory so it stays stable across ups.
func nodeAPIAddr(dir string) (string, error) {
	file := filepath.Join(dir, "api.addr")
	if b, err := os.ReadFile(file); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr, os.WriteFile(file, []byte(addr+"\n"), 0o644)
}

// waitEnrolled polls the hub until every spec node is enrolled, one is
// quarantined (an error naming it and why), or timeout.
func (c *localCluster) waitEnrolled(ctx context.Context, timeout time.Duration) ([]api.Node, error) {
	admin, done, err := c.admin()
	if err != nil {
		return nil, err
	}
	defer done()
	deadline := time.Now().Add(timeout)
	reported := map[string]string{}
	for {
		res, err := admin.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		byName := map[string]api.Node{}
		for _, n := range res.Nodes {
			byName[n.Name] = n
		}
		enrolled := 0
		var bad []string
		for _, sn := range c.spec.Topology.Nodes {
			n := byName[sn.Name]
			if n.State != reported[sn.Name] && n.State != "" {
				c.pr.Step("%s: %s", sn.Name, n.State)
				reported[sn.Name] = n.State
			}
			switch n.State {
			case "enrolled":
				enrolled++
			case "quarantined", "revoked", "fenced":
				bad = append(bad, fmt.Sprintf("%s is %s: %s", sn.Name, n.State, reasonText(n.Reason, 0)))
			}
		}
		if len(bad) > 0 {
			return res.Nodes, fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		if enrolled == len(c.spec.Topology.Nodes) {
			c.pr.Step("all %d nodes enrolled", enrolled)
			return res.Nodes, nil
		}
		c.pr.Update("%d/%d nodes enrolled", enrolled, len(c.spec.Topology.Nodes))
		if time.Now().After(deadline) {
			return res.Nodes, fmt.Errorf("%d of %d nodes enrolled after %s; see the consoles in %s", enrolled, len(c.spec.Topology.Nodes), timeout, filepath.Join(c.dir, "nodes"))
		}
		select {
		case <-ctx.Done():
			return res.Nodes, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
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
	if g.output == OutputJSON {
		return g.writeJSON(map[string]any{"cluster": c.spec.Metadata.Name, "hub": c.hubAddr, "nodes": out})
	}
	if c.hubAddr == "" {
		fmt.Fprintf(g.stdout, "cluster %s: hub not running\n", c.spec.Metadata.Name)
	} else {
		fmt.Fprintf(g.stdout, "cluster %s: hub %s (kubedos node list --hub %s --keys %s)\n", c.spec.Metadata.Name, c.hubAddr, c.hubAddr, c.keysDir())
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tVM\tSTATE\tBUILD\tNODE API\tCONSOLE")
	for _, n := range out {
		state := n.State
		if state == "" {
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
			if addr, err := os.ReadFile(filepath.Join(c.hubDir(), "hub.addr")); err == nil && pidAlive(filepath.Join(c.hubDir(), "hub.pid")) {
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
		Short: "Stop every VM, its swtpm and the hub; --purge also deletes TPMs, disks and hub state",
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
			if err := stopPidFile(filepath.Join(c.hubDir(), "hub.pid")); err != nil {
				errs = append(errs, fmt.Errorf("hub: %w", err))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if purge {
				if err := os.RemoveAll(c.dir); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "cluster %s is down (%d VMs and the hub stopped)%s\n", s.Metadata.Name, len(s.Topology.Nodes),
				map[bool]string{true: "; state purged", false: ""}[purge])
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the TPM state, disks and hub state")
	return cmd
}

func pidAlive(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && pid > 0 && syscall.Kill(pid, 0) == nil
}

func stopPidFile(pidFile string) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return os.Remove(pidFile)
	}
	if syscall.Kill(pid, 0) != nil {
		return os.Remove(pidFile) // not running: a stale file
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return os.Remove(pidFile)
}
