package hubhost

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
)

// Files of a hub a master keeps (KeeperConfig.Dir, on the state partition).
const (
	FileCACert   = "ca.crt"
	FileCAKey    = "ca.key.sealed" // PKCS #8 PEM, sealed to the TPM
	FileSpec     = "spec.yaml"
	FileManifest = "manifest.json"
	FileSig      = "manifest.sig"
	FileEKCAs    = "ek-ca.pem"
	FileHosts    = "hosts.json"
	FileState    = "hub.db"
)

// ActionTakeOver is the audit action of a handoff, in the hub's log.
const ActionTakeOver = string(pki.ActionTakeOverHub)

// Classes of a refused handoff: a malformed one (errdefs.ErrInvalid), and
// one this node may not take now (errdefs.ErrPrecondition).
var (
	ErrInvalid = errdefs.New(errdefs.ErrInvalid, "invalid handoff")
	ErrRefused = errdefs.New(errdefs.ErrPrecondition, "handoff refused")
)

// KeeperConfig is what a master's kubedosd keeps a hub with.
type KeeperConfig struct {
	// Dir holds the hub (the Files above); it exists only once complete.
	Dir string
	// CA is the cluster CA certificate baked into the image: a handoff must
	// carry its key and nothing else.
	CA *x509.Certificate
	// ArtifactKey checks the handed manifest's signature (the image's key).
	ArtifactKey ed25519.PublicKey
	Sealer      Sealer
	// Listen is where the hub serves (":7443").
	Listen string
	// MetricsListen is where the hub serves /metrics (":7446"; "" serves
	// none). The baseline firewall keeps that port off the LAN: Prometheus
	// reaches it over wg-observability.
	MetricsListen string
	// ConsoleListen is where Console serves the web console (":8443"; ""
	// or Console nil: none). The baseline firewall opens it on the master
	// from the LAN, like the hub's port.
	ConsoleListen string
	// Console serves the web console of h on lis until ctx ends
	// (console.ServeAtHub: cmd/kubedosd wires it, this package cannot
	// import the console). A console that fails is logged; the hub stays.
	Console func(ctx context.Context, h *Hub, lis net.Listener) error
	// EtcdSnapshotDir is where the hub keeps etcd snapshots, on the
	// master's data partition ("": it takes none; keeper_etcd.go).
	EtcdSnapshotDir string
	// SelfFile is where this node's own identity looks up its hub; once the
	// hub is here SelfAddr is written to it (renewals go to the local hub).
	SelfFile, SelfAddr string
	Logf               func(string, ...any)
	Now                func() time.Time
}

// Keeper serves the hub on a master once it has been handed over, and
// again at every boot after.
type Keeper struct {
	cfg KeeperConfig
	// takeMu makes handoffs one at a time: the second sees the first's hub.
	takeMu sync.Mutex

	mu      sync.Mutex
	ctx     context.Context // Run's; nil until Run starts
	wg      sync.WaitGroup
	serving bool
	addr    string // where it serves, once it does
	// metricsAddr is where /metrics is served ("" when it is not).
	metricsAddr string
	// consoleAddr is where the web console is served ("" when it is not).
	consoleAddr string
}

// NewKeeper makes a Keeper; Run serves.
func NewKeeper(cfg KeeperConfig) *Keeper {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", api.HubPort)
	}
	return &Keeper{cfg: cfg}
}

// Installed reports whether this node holds a hub.
func (k *Keeper) Installed() bool {
	_, err := os.Stat(filepath.Join(k.cfg.Dir, FileState))
	return err == nil
}

// Run serves the hub while ctx lasts, if this node holds one now or is
// handed one later.
func (k *Keeper) Run(ctx context.Context) {
	k.mu.Lock()
	k.ctx = ctx
	k.mu.Unlock()
	if k.Installed() {
		if err := k.start(); err != nil {
			k.cfg.Logf("hub not served: %v", err)
		}
	}
	<-ctx.Done()
	k.wg.Wait()
}

// Serving reports whether the hub is being served.
func (k *Keeper) Serving() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.serving
}

// Addr is where the hub serves ("" until it does).
func (k *Keeper) Addr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.addr
}

// MetricsAddr is where the hub's /metrics is served ("" when it is not).
func (k *Keeper) MetricsAddr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.metricsAddr
}

// start loads the installed hub and serves it until Run's ctx ends.
func (k *Keeper) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx == nil {
		return errors.New("the keeper is not running")
	}
	if k.serving {
		return nil
	}
	cfg, err := k.load()
	if err != nil {
		return err
	}
	h, err := Open(k.ctx, cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", k.cfg.Listen)
	if err != nil {
		h.Close()
		return fmt.Errorf("hub: listen %s: %w", k.cfg.Listen, err)
	}
	k.serving, k.addr = true, lis.Addr().String()
	k.cfg.Logf("hub for cluster %q serving on %s (state %s)", cfg.Spec.Metadata.Name, lis.Addr(), cfg.StatePath)
	k.serveMetrics(h)
	// The console lives as long as the hub it acts at.
	hctx, hcancel := context.WithCancel(k.ctx)
	k.serveConsole(hctx, h)
	k.serveSnapshots(hctx, h)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer hcancel()
		if err := h.Serve(k.ctx, lis); err != nil {
			k.cfg.Logf("hub: %v", err)
		}
		k.mu.Lock()
		k.serving = false
		k.mu.Unlock()
	}()
	return nil
}

// serveMetrics serves the hub's /metrics beside it, if configured. Metrics
// are not worth refusing the hub for: a port in use is logged and left.
func (k *Keeper) serveMetrics(h *Hub) {
	if k.cfg.MetricsListen == "" {
		return
	}
	lis, err := net.Listen("tcp", k.cfg.MetricsListen)
	if err != nil {
		k.cfg.Logf("hub metrics not served: listen %s: %v", k.cfg.MetricsListen, err)
		return
	}
	k.cfg.Logf("hub metrics on https://%s/metrics", lis.Addr())
	k.metricsAddr = lis.Addr().String()
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		if err := h.ServeMetrics(k.ctx, lis); err != nil {
			k.cfg.Logf("hub metrics: %v", err)
		}
		k.mu.Lock()
		k.metricsAddr = ""
		k.mu.Unlock()
	}()
}

// bundle is a hub's configuration as bytes: what a handoff carries and Dir
// keeps (with the key sealed).
type bundle struct {
	caCert, caKey, spec, manifest, sig, ekCAs []byte
	hosts                                     []string
	kubeKeys                                  map[string][]byte // optional (keeper_kube.go)
}

// parse checks a bundle and makes the hub's configuration of it. Errors
// name the field and wrap ErrInvalid.
func (k *Keeper) parse(b bundle) (Config, error) {
	bad := func(field string, err error) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s: %w", ErrInvalid, field, err)
	}
	blk, _ := pem.Decode(b.caCert)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return bad("caCert", errors.New("not a PEM certificate"))
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return bad("caCert", err)
	}
	if k.cfg.CA == nil || !bytes.Equal(cert.Raw, k.cfg.CA.Raw) {
		return bad("caCert", fmt.Errorf("%q is not this node's cluster CA", cert.Subject.CommonName))
	}
	blk, _ = pem.Decode(b.caKey)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return bad("caKey", errors.New("not a PEM PKCS #8 private key"))
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return bad("caKey", errors.New("does not parse as PKCS #8"))
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return bad("caKey", fmt.Errorf("key type %T cannot sign", key))
	}
	ca, err := pki.NewCA(cert, signer)
	if err != nil {
		return bad("caKey", err)
	}
	s, err := spec.LoadBytes(b.spec)
	if err != nil {
		return bad("spec", err)
	}
	if err := sign.VerifyBlob(k.cfg.ArtifactKey, b.manifest, b.sig); err != nil {
		return bad("signature", fmt.Errorf("the manifest is not signed by this image's artifact key: %w", err))
	}
	m, err := manifest.Parse(b.manifest)
	if err != nil {
		return bad("manifest", err)
	}
	if m.Cluster != s.Metadata.Name {
		return bad("manifest", fmt.Errorf("build %s is of cluster %q, the spec is %q", m.BuildID, m.Cluster, s.Metadata.Name))
	}
	var ekCAs *x509.CertPool
	if len(b.ekCAs) > 0 {
		ekCAs = x509.NewCertPool()
		if !ekCAs.AppendCertsFromPEM(b.ekCAs) {
			return bad("ekCAs", errors.New("no PEM certificates"))
		}
	}
	for i, h := range b.hosts {
		if h == "" || len(h) > 253 {
			return bad(fmt.Sprintf("hosts[%d]", i), fmt.Errorf("%q is not a host name or address", h))
		}
	}
	kube, err := parseKube(b.kubeKeys)
	if err != nil {
		return bad("kubeKeys", err)
	}
	return Config{Spec: s, Manifest: (*manifest.Manifest)(m), CA: ca, ArtifactKey: k.cfg.ArtifactKey, EKCAs: ekCAs,
		StatePath: filepath.Join(k.cfg.Dir, FileState), Hosts: b.hosts, Now: k.cfg.Now, Kube: kube,
		EtcdSnapshotDir: k.cfg.EtcdSnapshotDir}, nil
}

// load reads the installed hub, unsealing the CA key.
func (k *Keeper) load() (Config, error) {
	read := func(name string, optional bool) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(k.cfg.Dir, name))
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	var b bundle
	var sealed, hosts []byte
	var err error
	for _, f := range []struct {
		name     string
		to       *[]byte
		optional bool
	}{{FileCACert, &b.caCert, false}, {FileCAKey, &sealed, false}, {FileSpec, &b.spec, false}, {FileManifest, &b.manifest, false},
		{FileSig, &b.sig, false}, {FileEKCAs, &b.ekCAs, true}, {FileHosts, &hosts, true}} {
		if *f.to, err = read(f.name, f.optional); err != nil {
			return Config{}, fmt.Errorf("hub in %s: %w", k.cfg.Dir, err)
		}
	}
	if len(hosts) > 0 {
		if err := json.Unmarshal(hosts, &b.hosts); err != nil {
			return Config{}, fmt.Errorf("hub in %s: %s: %w", k.cfg.Dir, FileHosts, err)
		}
	}
	if k.cfg.Sealer == nil {
		return Config{}, errors.New("no TPM to unseal the CA key with")
	}
	if b.caKey, err = k.cfg.Sealer.Unseal(sealed); err != nil {
		return Config{}, fmt.Errorf("hub in %s: CA key: %w", k.cfg.Dir, err)
	}
	if b.kubeKeys, err = k.loadKube(); err != nil {
		return Config{}, fmt.Errorf("hub in %s: %w", k.cfg.Dir, err)
	}
	cfg, err := k.parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("hub in %s: %w", k.cfg.Dir, err)
	}
	return cfg, nil
}

// TakeOver installs the hub a handoff carries and serves it. self and role
// are this node's; actor is the caller, for the hub's audit log. Nothing
// is installed unless every check passes: the node is a master of the
// spec, the CA is the image's, the manifest is signed, the state opens
// and holds this node enrolled. A refused handoff wraps ErrInvalid or
// ErrRefused; the node API's errdefs interceptor answers them as
// InvalidArgument and FailedPrecondition.
func (k *Keeper) TakeOver(ctx context.Context, self, role, actor string, req *api.HubHandoff) (*api.HubHandoffResult, error) {
	k.takeMu.Lock()
	defer k.takeMu.Unlock()
	if role != string(spec.RoleMaster) {
		return nil, fmt.Errorf("%w: node %s has role %s; the hub runs on a master", ErrRefused, self, role)
	}
	if k.Installed() {
		return nil, fmt.Errorf("%w: node %s already holds the hub (%s)", ErrRefused, self, k.cfg.Dir)
	}
	if req == nil {
		return nil, fmt.Errorf("%w: empty request", ErrInvalid)
	}
	if len(req.State) == 0 {
		return nil, fmt.Errorf("%w: state: empty", ErrInvalid)
	}
	if len(req.State) > api.MaxHubStateBytes {
		return nil, fmt.Errorf("%w: state: %d bytes, more than %d", ErrInvalid, len(req.State), api.MaxHubStateBytes)
	}
	cfg, err := k.parse(bundle{caCert: req.CACert, caKey: req.CAKey, spec: req.Spec, manifest: req.Manifest, sig: req.Signature,
		ekCAs: req.EKCAs, hosts: req.Hosts, kubeKeys: req.KubeKeys})
	if err != nil {
		return nil, err
	}
	if n, ok := cfg.Spec.NodeByName(self); !ok || n.Role != spec.RoleMaster {
		return nil, fmt.Errorf("%w: spec: cluster %s has no master named %s", ErrInvalid, cfg.Spec.Metadata.Name, self)
	}
	if k.cfg.Sealer == nil {
		return nil, fmt.Errorf("%w: no TPM to seal the CA key with", ErrRefused)
	}

	parent := filepath.Dir(k.cfg.Dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(k.cfg.Dir)+"-")
	if err != nil {
		return nil, err
	}
	installed := false
	defer func() {
		if !installed {
			os.RemoveAll(tmp)
		}
	}()
	hosts, _ := json.Marshal(req.Hosts)
	files := []struct {
		name string
		data []byte
	}{{FileCACert, req.CACert}, {FileSpec, req.Spec}, {FileManifest, req.Manifest}, {FileSig, req.Signature},
		{FileHosts, hosts}, {FileState, req.State}}
	if len(req.EKCAs) > 0 {
		files = append(files, struct {
			name string
			data []byte
		}{FileEKCAs, req.EKCAs})
	}
	for _, f := range files {
		if err := durable.CreateFile(filepath.Join(tmp, f.name), f.data, 0o600); err != nil {
			return nil, err
		}
	}
	res, err := k.adopt(filepath.Join(tmp, FileState), self, actor, cfg)
	if err != nil {
		return nil, err
	}
	sealed, err := k.cfg.Sealer.Seal(req.CAKey)
	if err != nil {
		return nil, err
	}
	if err := durable.CreateFile(filepath.Join(tmp, FileCAKey), sealed, 0o600); err != nil {
		return nil, err
	}
	if err := k.sealKube(tmp, req.KubeKeys); err != nil {
		return nil, err
	}
	if err := durable.SyncDir(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, k.cfg.Dir); err != nil {
		return nil, fmt.Errorf("install the hub: %w", err)
	}
	installed = true
	if err := durable.SyncDir(parent); err != nil {
		return nil, err
	}
	if k.cfg.SelfFile != "" {
		if err := durable.WriteFile(k.cfg.SelfFile, []byte(k.cfg.SelfAddr+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("point this node at its own hub: %w", err)
		}
	}
	if err := k.start(); err != nil {
		return nil, fmt.Errorf("hub installed in %s but not served: %w", k.cfg.Dir, err)
	}
	res.Node, res.Listen, res.Sealed = self, k.cfg.Listen, true
	return res, nil
}

// adopt opens the handed state (which must hold this node enrolled) and
// records the takeover in its audit log.
func (k *Keeper) adopt(path, self, actor string, cfg Config) (*api.HubHandoffResult, error) {
	st, err := hub.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: state: %w", ErrInvalid, err)
	}
	defer st.Close()
	me, err := st.Node(self)
	if err != nil {
		return nil, fmt.Errorf("%w: state: node %s: %w", ErrInvalid, self, err)
	}
	if me.State != hub.StateEnrolled {
		return nil, fmt.Errorf("%w: state: node %s is %s there, not enrolled", ErrRefused, self, me.State)
	}
	if _, err := st.VerifyAuditChain(); err != nil {
		return nil, fmt.Errorf("%w: state: %w", ErrInvalid, err)
	}
	nodes, err := st.Nodes()
	if err != nil {
		return nil, fmt.Errorf("%w: state: %w", ErrInvalid, err)
	}
	err = st.Record(hub.AuditEntry{Time: k.cfg.Now().UTC(), Actor: actor, Action: ActionTakeOver, Target: self, Outcome: hub.OutcomeOK,
		Detail: fmt.Sprintf("the hub of cluster %s moved to node %s (build %s); CA key sealed to its TPM", cfg.Spec.Metadata.Name, self, cfg.Manifest.BuildID)})
	if err != nil {
		return nil, err
	}
	head, err := st.VerifyAuditChain()
	if err != nil {
		return nil, err
	}
	return &api.HubHandoffResult{Nodes: len(nodes), AuditSeq: head.Seq, AuditHead: head.Hash}, nil
}
