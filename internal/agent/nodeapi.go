package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/wg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Files of the node API on the state partition (/var/lib/kubedos).
const (
	NodeStateDir = "/var/lib/kubedos"
	// ConfigFile is the applied node configuration (NodeConfig, canonical).
	ConfigFile = "config.json"
	// RevokedFile is the last revocation list fetched from the hub.
	RevokedFile = "revoked.json"
)

// Classes of failure of the node API, for errors.Is, each of an errdefs
// class; errdefs' interceptor at the gRPC edge turns the class into the
// code: ErrInvalid → InvalidArgument, ErrNotFound → NotFound, ErrRefused →
// FailedPrecondition (ErrPolicy → PermissionDenied).
var (
	ErrInvalid  = errdefs.New(errdefs.ErrInvalid, "invalid request")
	ErrNotFound = errdefs.New(errdefs.ErrNotFound, "not found")
	ErrRefused  = errdefs.New(errdefs.ErrPrecondition, "refused")
)

// nodeAPIActions is who may call what: each method's pki action. Readers
// read (the etcd member list too); operators restart services and apply
// configuration; admins reboot, shut down, remove etcd members and restore etcd. A method missing here is refused to everyone (a test
// checks every method of api.NodeService is listed).
var nodeAPIActions = map[string]pki.Action{
	"Version":          pki.ActionRead,
	"Health":           pki.ActionRead,
	"Services":         pki.ActionRead,
	"Logs":             pki.ActionRead,
	"Follow":           pki.ActionRead,
	"Dmesg":            pki.ActionRead,
	"ConfigGet":        pki.ActionRead,
	"Drift":            pki.ActionRead,
	"Planes":           pki.ActionRead,
	"RestartService":   pki.ActionRestartService,
	"ConfigApply":      pki.ActionApplyConfig,
	"Reboot":           pki.ActionPower,
	"Shutdown":         pki.ActionPower,
	"Upgrade":          pki.ActionUpgrade,
	"Rollback":         pki.ActionUpgrade,
	"TakeOverHub":      pki.ActionTakeOverHub,
	"EtcdMembers":      pki.ActionRead,
	"EtcdRemoveMember": pki.ActionEtcdRemoveMember,
	"EtcdRestore":      pki.ActionEtcdRestore,
}

// HubKeeper serves the cluster's hub on a master once an operator hands it
// over (internal/hubhost's Keeper). Its errors are gRPC statuses.
type HubKeeper interface {
	TakeOver(ctx context.Context, self, role, actor string, req *api.HubHandoff) (*api.HubHandoffResult, error)
}

// PlaneReporter says which planes the node is on (Planes.Report).
type PlaneReporter interface {
	Report() ([]wg.Interface, time.Time, error)
}

// NodeAPIConfig is what the node API server needs.
type NodeAPIConfig struct {
	Name string // the node's name: its certificate's CN and SAN
	Role string
	// CA is the cluster CA certificate baked into the image.
	CA *x509.Certificate
	// IdentityDir holds node.key and node.crt, reloaded when renewed.
	IdentityDir string
	// StateDir holds ConfigFile and RevokedFile.
	StateDir string
	Status   Status
	System   System
	// Slots writes upgrades and rollbacks (nil: the node refuses them).
	Slots       *Slots
	Revocations *RevocationList
	// Hub takes the cluster's hub over (nil: the node refuses to).
	Hub HubKeeper
	// Planes says which WireGuard planes the node is on (nil: none).
	Planes PlaneReporter
	// ReadPlane reads an interface from the kernel (default wg.Read).
	ReadPlane func(wg.Interface) wg.Status
	// PCRDir and MountInfo are read by health and drift checks (default
	// PCRDir and /proc/self/mountinfo).
	PCRDir    string
	MountInfo string
	// RevocationMaxAge bounds how old the revocation list may be, until the
	// hub tells the spec's trust.revocationMaxAge with the list, before
	// the API refuses every call but a reader's and health turns critical
	// (default DefaultRevocationMaxAge): revocation fails closed.
	RevocationMaxAge time.Duration
	// PowerDelay is how long reboot and shutdown wait after answering
	// (default 2 s).
	PowerDelay time.Duration
	// Audit receives a record of every call (default: AuditJournal).
	Audit func(AuditRecord)
	// Logf reports what happens outside a call (default: standard error).
	Logf func(string, ...any)
	// Controllers reports kubedosd's controllers for health and metrics
	// (nil: none listed).
	Controllers ControllerReporter
	// KubeReady says whether the node's Kubernetes Node is Ready (nil: a
	// node that runs no kubelet), for the metrics.
	KubeReady func(context.Context) KubeReadiness
	// KubePods lists the node's pods for a health request that asks
	// (nil, nil without a kubelet; nil: never).
	KubePods func(context.Context) ([]api.PodReadiness, error)
	// EtcdHealth says whether the node's etcd member is healthy (nil: a
	// node that runs no etcd), for node health.
	EtcdHealth func(context.Context) EtcdHealth
	// Etcd lists and removes etcd members through the node's own member
	// (nil: a node that runs no etcd).
	Etcd EtcdMembership
	// EtcdRestore replaces the node's etcd member's data with a snapshot
	// (nil: a node that runs no etcd).
	EtcdRestore EtcdRestorer
	// Clock paces the drift watch (default SystemClock); Now reads it
	// (default Clock.Now).
	Clock Clock
	Now   func() time.Time
}

// ControllerReporter says what state each of kubedosd's controllers is in
// (Supervisor.Statuses).
type ControllerReporter interface {
	Statuses() []ControllerStatus
}

// NodeAPI is kubedosd's node API server.
type NodeAPI struct {
	cfg   NodeAPIConfig
	certs *certReloader
	grpc  *grpc.Server

	configMu sync.Mutex // one ConfigApply at a time
	power    powerState
	drift    driftStats
}

// NewNodeAPI makes the server: TLS 1.3 with the node's enrollment
// certificate (reloaded when renewed), client certificates from the
// cluster CA, checked per call against the revocation list and the
// method's role.
func NewNodeAPI(cfg NodeAPIConfig) (*NodeAPI, error) {
	if cfg.CA == nil || cfg.System == nil || cfg.Revocations == nil || cfg.IdentityDir == "" || cfg.StateDir == "" {
		return nil, errors.New("node API: CA, System, Revocations, IdentityDir and StateDir are required")
	}
	if cfg.PCRDir == "" {
		cfg.PCRDir = PCRDir
	}
	if cfg.MountInfo == "" {
		cfg.MountInfo = "/proc/self/mountinfo"
	}
	if cfg.RevocationMaxAge == 0 {
		cfg.RevocationMaxAge = DefaultRevocationMaxAge
	}
	if cfg.PowerDelay == 0 {
		cfg.PowerDelay = 2 * time.Second
	}
	if cfg.Audit == nil {
		cfg.Audit = AuditJournal
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Clock.Now
	}
	if cfg.ReadPlane == nil {
		cfg.ReadPlane = wg.Read
	}
	if cfg.Logf == nil {
		cfg.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "kubedosd: node API: "+f+"\n", a...) }
	}
	n := &NodeAPI{cfg: cfg, certs: &certReloader{
		certFile: filepath.Join(cfg.IdentityDir, NodeCertFile), keyFile: filepath.Join(cfg.IdentityDir, NodeKeyFile)}}
	if _, err := n.certs.get(nil); err != nil {
		return nil, fmt.Errorf("node API: %w", err)
	}
	conf := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: n.certs.get,
		ClientCAs:      pool(cfg.CA),
		// A caller without a certificate reaches the interceptor, which
		// refuses it with Unauthenticated (a clearer answer than a failed
		// handshake).
		ClientAuth: tls.VerifyClientCertIfGiven,
	}
	n.grpc = grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewTLS(conf)),
		// errdefs outermost: n's interceptors audit the classed errors,
		// errdefs turns them into codes on the way out.
		grpc.ChainUnaryInterceptor(errdefs.UnaryServerInterceptor, n.unary),
		grpc.ChainStreamInterceptor(errdefs.StreamServerInterceptor, n.stream))...)
	api.RegisterNode(n.grpc, nodeService{n})
	return n, nil
}

// Serve accepts connections on lis until ctx ends, then stops gracefully.
// A reboot or shutdown it scheduled is owned by ctx too.
func (n *NodeAPI) Serve(ctx context.Context, lis net.Listener) error {
	n.power.start(ctx)
	defer n.power.wait()
	return api.Serve(ctx, n.grpc, lis)
}

// certReloader serves the node's current certificate: renewal rewrites the
// key and then the certificate, and the next handshake picks up the pair.
// While the two files do not match (between the writes), the last good
// pair is served.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, cerr := os.Stat(r.certFile)
	ks, kerr := os.Stat(r.keyFile)
	if cerr == nil && kerr == nil && r.cert != nil && cs.ModTime().Equal(r.certMod) && ks.ModTime().Equal(r.keyMod) {
		return r.cert, nil
	}
	pair, err := loadIdentity(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	r.cert = &pair
	if cerr == nil && kerr == nil {
		r.certMod, r.keyMod = cs.ModTime(), ks.ModTime()
	}
	return r.cert, nil
}

// caller authenticates the peer of ctx and checks its role allows method.
// Errors are of errdefs classes; the returned actor names the caller for
// the audit either way.
func (n *NodeAPI) caller(ctx context.Context, method string) (pki.Peer, string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Peer{}, "", errdefs.New(errdefs.ErrUnauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return pki.Peer{}, "", errdefs.New(errdefs.ErrUnauthenticated, "a client certificate from the cluster CA is required")
	}
	leaf := ti.State.PeerCertificates[0]
	pe, err := pki.AuthenticateAgainst(n.cfg.CA, leaf, n.cfg.Now(), n.cfg.Revocations.Set())
	if err != nil {
		return pe, leaf.Subject.CommonName + " (unverified)", errdefs.New(errdefs.ErrUnauthenticated, err.Error())
	}
	action, ok := nodeAPIActions[method]
	if !ok || !pki.Allows(pe.Role, action) {
		return pe, pe.Actor(), errdefs.New(errdefs.ErrPermission, fmt.Sprintf("%s may not call %s (%s) on node %s", pe.Actor(), method, action, n.cfg.Name))
	}
	// The caller was checked against the list the node has: if that list
	// is too old, a revoked operator could still act. Readers only read.
	if action != pki.ActionRead {
		if err := n.revocationsFresh(n.cfg.Now()); err != nil {
			return pe, pe.Actor(), errdefs.New(errdefs.ErrPrecondition, fmt.Sprintf("%s refused: %v", method, err))
		}
	}
	return pe, pe.Actor(), nil
}

func (n *NodeAPI) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	pe, actor, err := n.caller(ctx, method)
	rec := n.record(ctx, pe, actor, method, targetOf(req))
	if err != nil {
		n.audit(rec, err)
		return nil, err
	}
	resp, err := handler(context.WithValue(ctx, actorKey{}, actor), req)
	n.audit(rec, err)
	return resp, err
}

func (n *NodeAPI) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	method := path.Base(info.FullMethod)
	pe, actor, err := n.caller(ss.Context(), method)
	rec := n.record(ss.Context(), pe, actor, method, "")
	if err != nil {
		n.audit(rec, err)
		return err
	}
	start := rec
	start.Outcome = "started"
	n.cfg.Audit(start)
	err = handler(srv, ss)
	n.audit(rec, err)
	return err
}

// actorKey carries the authenticated caller's name to a method (for
// records kept elsewhere, such as the hub's audit log).
type actorKey struct{}

func actorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok {
		return a
	}
	return "unknown"
}
