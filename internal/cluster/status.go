package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/target"
)

// Report is a local cluster's state: its LAN, its hub, each node's VM and
// what the hub says of it (the JSON of kubedos cluster status).
type Report struct {
	Cluster  string       `json:"cluster"`
	Hub      string       `json:"hub"`
	HubOn    string       `json:"hubOn"` // host, or the master keeping it
	LAN      LAN          `json:"lan"`
	Nodes    []NodeReport `json:"nodes"`
	HubError string       `json:"hubError,omitempty"`
	// KeysDir is the key directory the report was made with (to show the
	// operator a command line that works).
	KeysDir string `json:"-"`
}

// LAN is the local cluster's segment.
type LAN struct {
	Up            bool   `json:"up"`
	Netns         string `json:"netns,omitempty"`
	Gateway       string `json:"gateway,omitempty"`
	HostInterface string `json:"hostInterface,omitempty"`
}

// NodeReport is one node: the hub's record, its VM, where to reach it.
type NodeReport struct {
	api.Node
	VM      string `json:"vm"` // running | stopped
	PID     int    `json:"pid,omitempty"`
	API     string `json:"api,omitempty"` // kubedos node … --node API --name NAME
	Console string `json:"console"`
}

// Status asks the cluster's hub for its nodes (the master's hub answers
// only while its VM runs: that is a HubError, not a failure) and reads
// each VM's state.
func (c *Cluster) Status(ctx context.Context) (*Report, error) {
	var nodes []api.Node
	var hubErr error
	addr, keeper, _, err := c.FindHub()
	if err != nil {
		return nil, err
	}
	switch {
	case keeper != "":
		if admin, done, err := c.admin(); err == nil {
			callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			res, lerr := admin.ListNodes(callCtx)
			cancel()
			done()
			if lerr == nil {
				nodes = res.Nodes
			} else {
				hubErr = lerr
			}
		}
	case addr != "":
		admin, done, err := c.admin()
		if err != nil {
			return nil, err
		}
		defer done()
		res, err := admin.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		nodes = res.Nodes
	}
	rep, err := c.Report(ctx, nodes)
	if rep != nil && hubErr != nil {
		rep.HubError = hubErr.Error()
	}
	return rep, err
}

// Report combines the hub's nodes with the target's view of each VM.
func (c *Cluster) Report(ctx context.Context, nodes []api.Node) (*Report, error) {
	t, err := c.localTarget()
	if err != nil {
		return nil, err
	}
	byName := map[string]api.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	rep := &Report{Cluster: c.Spec.Metadata.Name, Hub: c.hubAddr, HubOn: "host", KeysDir: c.keysDir(), Nodes: []NodeReport{}}
	if c.hubKeeper != "" {
		rep.HubOn = c.hubKeeper
	}
	if seg, err := c.segment(); err == nil {
		rep.LAN = LAN{Up: seg.Exists(), Netns: seg.Netns, Gateway: seg.Gateway.String(), HostInterface: seg.HostIf}
	}
	for _, sn := range c.Spec.Topology.Nodes {
		st, err := t.Status(ctx, sn.Name)
		if err != nil {
			return nil, err
		}
		nr := NodeReport{Node: byName[sn.Name], VM: "stopped", Console: st.Console}
		nr.Name, nr.Role = sn.Name, string(sn.Role)
		if st.State == target.StateRunning {
			nr.VM, nr.PID = "running", st.PID
		}
		if b, err := os.ReadFile(filepath.Join(c.NodeDir(sn.Name), "api.addr")); err == nil {
			nr.API = strings.TrimSpace(string(b))
		}
		rep.Nodes = append(rep.Nodes, nr)
	}
	return rep, nil
}

// Down stops every VM, its swtpm and the hub running from this host, then
// removes the LAN; purge also deletes the state directory (TPMs, disks,
// hub state). Every step is tried; the errors are joined.
func (c *Cluster) Down(ctx context.Context, purge bool) error {
	t, err := c.localTarget()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range c.Spec.Topology.Nodes {
		if err := t.Stop(ctx, n.Name); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	if err := c.hubRunner().Stop(c.HubDir()); err != nil {
		errs = append(errs, fmt.Errorf("hub: %w", err))
	}
	// Last: the namespace goes with every tap and the veth pair.
	if err := t.RemoveNetwork(ctx); err != nil {
		errs = append(errs, fmt.Errorf("LAN: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if purge {
		return os.RemoveAll(c.Dir)
	}
	return nil
}

// StopNode stops one node's machine (a fenced node's VM).
func (c *Cluster) StopNode(ctx context.Context, name string) error {
	if _, ok := c.Spec.NodeByName(name); !ok {
		return fmt.Errorf("no node %q in %s", name, c.SpecPath)
	}
	t, err := c.localTarget()
	if err != nil {
		return err
	}
	return t.Stop(ctx, name)
}
