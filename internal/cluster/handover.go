package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// HandOver moves the hub from this host to the master: the host's hub
// stops (so no change is lost), its state is copied as of that moment and
// sent with the CA, spec and signed manifest over the master's node API
// (admin mTLS); the master seals the CA key to its TPM and serves the hub
// on hubAddr. If the master refuses, the host's hub is started again.
func (c *Cluster) HandOver(ctx context.Context, master spec.Node, hubAddr string) error {
	apiAddr, err := os.ReadFile(filepath.Join(c.NodeDir(master.Name), "api.addr"))
	if err != nil {
		return err
	}
	req, err := c.handoffRequest(master)
	if err != nil {
		return err
	}
	node := NodeDialer{Addr: strings.TrimSpace(string(apiAddr)), Name: master.Name, Access: c.access()}
	// Before the host's hub stops: kubedosd reports itself enrolled a moment
	// before its node API listens, and on a loaded machine that moment can
	// be seconds (a CI run lost this race).
	if err := WaitNodeAPI(ctx, node, 2*time.Minute, 2*time.Second, c.Events); err != nil {
		return err
	}
	c.ev.msg("handing the hub to %s: stopping the hub on this host", master.Name)
	if err := c.hubRunner().Stop(c.HubDir()); err != nil {
		return fmt.Errorf("stop the hub on this host: %w", err)
	}
	state := filepath.Join(c.HubDir(), "hub.db")
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
	cl, done, err := node.Dial()
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
	rec := Handoff{Node: master.Name, Addr: hubAddr, At: time.Now().UTC(), AuditSeq: res.AuditSeq, AuditHead: res.AuditHead}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := durable.WriteFile(filepath.Join(c.HubDir(), HandoffFile), append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(c.HubDir(), hubAddrFile), []byte(hubAddr+"\n"), 0o600); err != nil {
		return err
	}
	c.hubAddr, c.hubKeeper = hubAddr, master.Name
	c.ev.emit(HandedOver{Node: master.Name, Addr: hubAddr, Records: res.Nodes, AuditSeq: res.AuditSeq})
	return c.waitHub(ctx, 2*time.Minute)
}

// handoffRequest gathers what the master's hub runs with.
func (c *Cluster) handoffRequest(master spec.Node) (*api.HubHandoff, error) {
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
		{&req.CACert, filepath.Join(c.keysDir(), filepath.FromSlash(pki.CACertFile))},
		{&req.CAKey, filepath.Join(c.keysDir(), filepath.FromSlash(pki.CAKeyFile))},
		{&req.Spec, c.SpecPath},
		{&req.Manifest, filepath.Join(c.BuildDir, manifest.ManifestFile)},
		{&req.Signature, filepath.Join(c.BuildDir, manifest.SignatureFile)},
	} {
		if *f.to, err = read(f.path); err != nil {
			return nil, err
		}
	}
	if pki.HasKubeKeys(c.keysDir()) {
		// The Kubernetes CAs and service-account key go with the hub, sealed there.
		if req.KubeKeys, err = pki.ReadKubeFiles(c.keysDir()); err != nil {
			return nil, fmt.Errorf("hub handoff: %w", err)
		}
	}
	if p := c.Spec.Trust.EKPolicy.CAFile; p != "" {
		if req.EKCAs, err = read(p); err != nil {
			return nil, err
		}
	}
	addr, err := c.nodeAddress(master)
	if err != nil {
		return nil, err
	}
	req.Hosts = []string{addr.Addr().String(), master.Name}
	return &req, nil
}

// NodeDialer reaches one node's API.
type NodeDialer struct {
	Addr, Name string
	Access     Access
}

// Dial connects; done closes.
func (n NodeDialer) Dial() (*api.NodeClient, func(), error) { return n.Access.Node(n.Addr, n.Name) }
