// Package hubhost runs the cluster's hub wherever it lives: on an operator
// machine (`kubedos hub serve`, and `kubedos cluster up` while the cluster
// boots) and on the master, whose kubedosd takes the hub over (Keeper) and
// serves it from the state partition across reboots and upgrades.
package hubhost

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// ServerCertLifetime is the life of the hub's own TLS certificate, made
// fresh each time it starts.
const ServerCertLifetime = 30 * 24 * time.Hour

// Config is everything a hub runs with.
type Config struct {
	Spec *spec.ClusterSpec
	// Manifest is the signed manifest of the build nodes must run; the
	// caller has checked its signature.
	Manifest    *manifest.Manifest
	CA          *pki.CA
	ArtifactKey ed25519.PublicKey
	// EKCAs vouch for EK certificates (nil: none).
	EKCAs *x509.CertPool
	// StatePath is the bbolt file.
	StatePath string
	// Hosts are names and addresses for the hub's TLS certificate besides
	// api.HubServerName.
	Hosts []string
	Now   func() time.Time
	// Kube holds the Kubernetes CAs; nil: the hub issues no Kubernetes
	// certificates.
	Kube *pki.KubeCAs
	// EtcdSnapshotDir is where the hub takes and keeps etcd snapshots
	// (on the master: KeeperConfig.EtcdSnapshotDir; "": none), for a
	// cluster that runs etcd (keeper_etcd.go).
	EtcdSnapshotDir string
}

// Hub is a hub ready to serve: its state is open until Serve returns or
// Close is called.
type Hub struct {
	*hub.Hub
	store  *hub.Store
	server *hub.Server
	cfg    Config
	// snaps takes the etcd snapshots (nil: this hub takes none).
	snaps *snapshotTaker
}

// Server is the hub's gRPC server: the web console on the master acts
// through it as each operator (hub.Server.As) and redeems its login links
// (hub.Server.ServeConsole).
func (h *Hub) Server() *hub.Server { return h.server }

// Spec is the cluster's spec the hub runs with.
func (h *Hub) Spec() *spec.ClusterSpec { return h.cfg.Spec }

// CA is the cluster CA the hub holds.
func (h *Hub) CA() *pki.CA { return h.cfg.CA }

// Hosts are the names and addresses the hub's certificate carries besides
// api.HubServerName (on the master: its LAN address and its name).
func (h *Hub) Hosts() []string { return h.cfg.Hosts }

// Open opens the state, makes the hub with the spec's policy and seeds the
// spec's registered EKs, each for its node (audited as the hub's own action).
func Open(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Spec == nil || cfg.Manifest == nil || cfg.CA == nil {
		return nil, errors.New("hub: spec, manifest and CA are required")
	}
	if cfg.Manifest.Cluster != cfg.Spec.Metadata.Name {
		return nil, fmt.Errorf("build %s is of cluster %q, the spec is %q", cfg.Manifest.BuildID, cfg.Manifest.Cluster, cfg.Spec.Metadata.Name)
	}
	life, err := time.ParseDuration(cfg.Spec.Trust.CertificateLifetime)
	if err != nil {
		return nil, fmt.Errorf("spec trust.certificateLifetime: %w", err)
	}
	var kube *hub.KubeIssuer
	if cfg.Kube != nil {
		if kube, err = hub.NewKubeIssuer(cfg.Kube, 0); err != nil {
			return nil, err
		}
	}
	var snaps hub.EtcdSnapshots
	var taker *snapshotTaker
	var take func(context.Context) (etcdsnap.Snapshot, error)
	if keepsEtcdSnapshots(cfg) {
		snaps = etcdsnap.NewDir(cfg.EtcdSnapshotDir)
		taker = &snapshotTaker{cfg: cfg, members: etcdMembers(cfg.Spec)}
		take = taker.take
	}
	store, err := hub.Open(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	h, err := hub.New(hub.Options{Store: store, CA: cfg.CA, Verifier: hub.AttestVerifier{EKCAs: cfg.EKCAs},
		Policy: hub.ManifestPolicy{Spec: cfg.Spec, Manifest: cfg.Manifest}, ArtifactKey: cfg.ArtifactKey,
		AllowWindow: cfg.Spec.Trust.EKPolicy.Mode == spec.EKWindow, CertLifetime: life,
		RevocationMaxAge: cfg.Spec.Trust.RevocationMaxAgeDuration(), Now: cfg.Now, Spec: cfg.Spec, Kube: kube,
		EtcdSnapshots: snaps, TakeEtcdSnapshot: take})
	if err != nil {
		store.Close()
		return nil, err
	}
	for _, r := range cfg.Spec.Trust.EKPolicy.RegisteredEKs {
		if err := h.RegisterEK(ctx, hub.System, r.Node, r.EK); err != nil {
			store.Close()
			return nil, fmt.Errorf("register EK %s for node %s from the spec: %w", r.EK, r.Node, err)
		}
	}
	srv, err := hub.NewServer(h, cfg.CA, cfg.Hosts, ServerCertLifetime)
	if err != nil {
		store.Close()
		return nil, err
	}
	return &Hub{Hub: h, store: store, server: srv, cfg: cfg, snaps: taker}, nil
}

// Serve serves on lis until ctx ends, dropping expired enrollment sessions
// every minute, then closes the state.
func (h *Hub) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go pruneLoop(ctx, h.Hub)
	err := h.server.Serve(ctx, lis)
	return errors.Join(err, h.Close())
}

// ServeWithMetrics is Serve, with /metrics served on mlis beside it while
// Serve runs (mlis nil: none); a metrics server that fails is reported to
// logf and does not stop the hub.
func (h *Hub) ServeWithMetrics(ctx context.Context, lis, mlis net.Listener, logf func(string, ...any)) error {
	if mlis == nil {
		return h.Serve(ctx, lis)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.ServeMetrics(ctx, mlis); err != nil {
			logf("hub metrics: %v", err)
		}
	}()
	err := h.Serve(ctx, lis)
	cancel()
	<-done
	return err
}

// ServeMetrics serves the hub's /metrics on lis until ctx ends (TLS with
// the hub's certificate, reader certificates and above: hub.Server).
func (h *Hub) ServeMetrics(ctx context.Context, lis net.Listener) error {
	return h.server.ServeMetrics(ctx, lis)
}

// Close closes the state (Serve does it when it returns).
func (h *Hub) Close() error {
	err := h.store.Close()
	if errors.Is(err, hub.ErrClosed) {
		return nil
	}
	return err
}

// pruneLoop drops expired enrollment sessions until ctx ends.
func pruneLoop(ctx context.Context, h *hub.Hub) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = h.Prune(ctx)
		}
	}
}
