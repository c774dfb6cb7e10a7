package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pidfile"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// Where the hub runs for a local cluster (cluster up --hub-on).
const (
	HubOnMaster = "master" // handed to the master's kubedosd once it enrolled
	HubOnHost   = "host"   // kubedos hub serve on the LAN gateway, for good
)

// handoffFile records, in the hub's directory, that the master keeps the
// hub: from then on no hub runs on this host for the cluster.
const handoffFile = "handoff.json"

// handoff is what handoffFile holds.
type handoff struct {
	Node      string    `json:"node"`
	Addr      string    `json:"addr"`
	At        time.Time `json:"at"`
	AuditSeq  uint64    `json:"auditSeq"`
	AuditHead string    `json:"auditHead"`
}

func (c *localCluster) readHandoff() (*handoff, error) { return readHandoff(c.hubDir()) }

// readHandoff reads the handoff record in a hub state directory; nil if
// the hub there was never handed over.
func readHandoff(dir string) (*handoff, error) {
	b, err := os.ReadFile(filepath.Join(dir, handoffFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h handoff
	if err := json.Unmarshal(b, &h); err != nil || h.Node == "" || h.Addr == "" {
		return nil, fmt.Errorf("%s: not a handoff record", filepath.Join(dir, handoffFile))
	}
	return &h, nil
}

// master is the spec's master (validation requires exactly one).
func (c *localCluster) master() (spec.Node, error) {
	for _, n := range c.spec.Topology.Nodes {
		if n.Role == spec.RoleMaster {
			return n, nil
		}
	}
	return spec.Node{}, fmt.Errorf("cluster %s has no master to keep the hub", c.spec.Metadata.Name)
}

// masterHubAddr is where the master serves the hub once it keeps it.
func (c *localCluster) masterHubAddr(seg interface {
	NodeAddress(string) (netip.Prefix, error)
}) (string, error) {
	m, err := c.master()
	if err != nil {
		return "", err
	}
	addr, err := seg.NodeAddress(m.Address)
	if err != nil {
		return "", fmt.Errorf("topology.nodes[%s].address: %w", m.Name, err)
	}
	return netip.AddrPortFrom(addr.Addr(), api.HubPort).String(), nil
}

// handOver moves the hub from this host to the master: the host's hub
// stops (so no change is lost), its state is copied as of that moment and
// sent with the CA, spec and signed manifest over the master's node API
// (admin mTLS); the master seals the CA key to its TPM and serves the hub.
// If the master refuses, the host's hub is started again.
func (c *localCluster) handOver(ctx context.Context, master spec.Node, hubAddr string) error {
	apiAddr, err := os.ReadFile(filepath.Join(c.nodeDir(master.Name), "api.addr"))
	if err != nil {
		return err
	}
	req, err := c.handoffRequest(master)
	if err != nil {
		return err
	}
	nc := nodeAPIClient{addr: strings.TrimSpace(string(apiAddr)), name: master.Name, keys: c.keys.Dir}
	// Before the host's hub stops: kubedosd reports itself enrolled a moment
	// before its node API listens, and on a loaded machine that moment can
	// be seconds (a CI run lost this race).
	if err := waitNodeAPI(ctx, nc, 2*time.Minute, 2*time.Second, c.pr); err != nil {
		return err
	}
	c.pr.Step("handing the hub to %s: stopping the hub on this host", master.Name)
	if err := pidfile.Stop(filepath.Join(c.hubDir(), "hub.pid"), 5*time.Second); err != nil {
		return fmt.Errorf("stop the hub on this host: %w", err)
	}
	state := filepath.Join(c.hubDir(), "hub.db")
	st, err := hub.Open(state)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	_, err = st.Snapshot(&buf)
	err = errors.Join(err, st.Close())
	if err != nil {
		return err
	}
	req.State = buf.Bytes()
	cl, done, err := nc.dial()
	if err != nil {
		return err
	}
	defer done()
	callCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	res, err := cl.TakeOverHub(callCtx, req)
	cancel()
	if err != nil {
		back := c.startHub(ctx, c.hubAddr)
		return errors.Join(fmt.Errorf("%s refused the hub: %w", master.Name, err), back)
	}
	// The host's copy is history now: renamed so nothing serves it again.
	if err := os.Rename(state, state+".handed-over"); err != nil {
		return err
	}
	rec := handoff{Node: master.Name, Addr: hubAddr, At: time.Now().UTC(), AuditSeq: res.AuditSeq, AuditHead: res.AuditHead}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := writeNew(filepath.Join(c.hubDir(), handoffFile), append(b, '\n'), 0o600, true); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(c.hubDir(), "hub.addr"), []byte(hubAddr+"\n"), 0o600, true); err != nil {
		return err
	}
	c.hubAddr, c.hubKeeper = hubAddr, master.Name
	c.pr.Step("hub handed to %s: %d node records, CA key sealed to its TPM, audit entry %d; serving on %s",
		master.Name, res.Nodes, res.AuditSeq, hubAddr)
	return c.waitHub(ctx, 2*time.Minute)
}

// handoffRequest gathers what the master's hub runs with.
func (c *localCluster) handoffRequest(master spec.Node) (*api.HubHandoff, error) {
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("hub handoff: %w", err)
		}
		return b, nil
	}
	var req api.HubHandoff
	var err error
	for _, f := range []struct {
		to   *[]byte
		path string
	}{
		{&req.CACert, filepath.Join(c.keys.Dir, filepath.FromSlash(pki.CACertFile))},
		{&req.CAKey, filepath.Join(c.keys.Dir, filepath.FromSlash(pki.CAKeyFile))},
		{&req.Spec, c.specPath},
		{&req.Manifest, filepath.Join(c.buildDir, manifest.ManifestFile)},
		{&req.Signature, filepath.Join(c.buildDir, manifest.SignatureFile)},
	} {
		if *f.to, err = read(f.path); err != nil {
			return nil, err
		}
	}
	if req.KubeKeys, err = kubeKeysIfPresent(c.keys.Dir); err != nil {
		return nil, fmt.Errorf("hub handoff: %w", err)
	}
	if p := c.spec.Trust.EKPolicy.CAFile; p != "" {
		if req.EKCAs, err = read(p); err != nil {
			return nil, err
		}
	}
	seg, err := c.segment()
	if err != nil {
		return nil, err
	}
	addr, err := seg.NodeAddress(master.Address)
	if err != nil {
		return nil, err
	}
	req.Hosts = []string{addr.Addr().String(), master.Name}
	return &req, nil
}

// waitNodeAPI polls the node's API every interval until it answers a
// Version call or timeout passes; the error names the address and the last
// failure.
func waitNodeAPI(ctx context.Context, nc nodeAPIClient, timeout, interval time.Duration, pr *progress) error {
	err := waitAnswer(ctx, timeout, interval, pr, fmt.Sprintf("%s: waiting for its node API on %s", nc.name, nc.addr),
		func(ctx context.Context) error {
			cl, done, err := nc.dial()
			if err != nil {
				return err
			}
			defer done()
			_, err = cl.Version(ctx)
			return err
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: node API on %s did not answer within %s: %w", nc.name, nc.addr, timeout, err)
	}
	return err
}

// waitHub waits until the hub at c.hubAddr answers an admin call.
func (c *localCluster) waitHub(ctx context.Context, timeout time.Duration) error {
	err := waitAnswer(ctx, timeout, 2*time.Second, c.pr, "waiting for the hub on "+c.hubAddr,
		func(ctx context.Context) error {
			admin, done, err := c.admin()
			if err != nil {
				return err
			}
			defer done()
			_, err = admin.ListNodes(ctx)
			return err
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("the hub on %s did not answer within %s: %w", c.hubAddr, timeout, err)
	}
	return err
}

// waitAnswer calls call (10 s each) every interval until it succeeds, ctx
// ends (ctx.Err()) or timeout passes (the last failure), showing waiting
// in between.
func waitAnswer(ctx context.Context, timeout, interval time.Duration, pr *progress, waiting string, call func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := call(callCtx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return err
		}
		pr.Update("%s", waiting)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
