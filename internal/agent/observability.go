package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/observability"
)

// observabilityHub is what the prometheus controller needs of the hub.
type observabilityHub interface {
	Config(ctx context.Context, r *api.ObservabilityRequest) (*api.ObservabilityResponse, error)
}

// promUnits is what the prometheus controller needs of systemd.
type promUnits interface {
	unitControl
	DaemonReload(ctx context.Context) error
}

// Where the prometheus controller puts things on the node.
const (
	// PrometheusUnit is Debian's unit; the build drops its enable links
	// (build.StartedByKubedosd): this controller starts it.
	PrometheusUnit = "prometheus.service"
	// PrometheusDropIn is the runtime drop-in (the root's /etc is read-only).
	PrometheusDropIn = "/run/systemd/system/prometheus.service.d/kubedos.conf"
	// prometheusUser runs Prometheus (Debian's package makes it): it reads
	// the reader key and owns the database.
	prometheusUser = "prometheus"
	// maxObsFile bounds one file the hub sends (a target file per node,
	// the configuration, the rules).
	maxObsFile = 1 << 20
)

// prometheusRunner is the controller that runs Prometheus on the
// prometheus node (docs/observability.md): every obsEvery it asks the hub
// for the configuration (made from the hub's spec; the scrape targets
// follow the registry) and, when its reader certificate is missing, does
// not match its key or is due for renewal, a new one for a new key made
// here; it writes what changed under observability.DefaultDir (the state
// partition), the drop-in under /run, and starts Prometheus once the
// wg-observability address it listens on is up, reloading it when its
// configuration or rules change. Prometheus rereads target files and TLS
// files by itself.
type prometheusRunner struct {
	// root prefixes every path: "" on a node, a directory in tests.
	root    string
	units   promUnits
	dial    func() (observabilityHub, func(), error)
	clock   Clock
	every   time.Duration
	idle    time.Duration
	logf    func(string, ...any)
	hasAddr func(netip.Addr) bool
	// owner is the uid and gid Prometheus runs as; -1, -1 leaves owners.
	owner func() (uid, gid int, err error)
	// observe asks the running Prometheus what it scrapes and what fires,
	// for node health; nil: not asked.
	observe func(ctx context.Context, listen netip.AddrPort) (string, error)

	reported

	mu      sync.Mutex
	nextTry time.Time
	started bool
	// daemonReload: the drop-in changed and systemd has not read it yet
	// (it may change while the plane is still down).
	daemonReload bool
}

// obsEvery paces the controller: a node enrolled or revoked reaches
// Prometheus's targets within it (Prometheus rereads the files at once).
const obsEvery = 30 * time.Second

func newPrometheusRunner(cfg EnrollConfig, sys *HostSystem, clock Clock, logf func(string, ...any)) *prometheusRunner {
	return &prometheusRunner{units: sys, clock: clock, every: obsEvery, idle: kubeIdle, logf: logf,
		hasAddr:  func(a netip.Addr) bool { _, err := lanInterfaceOf(a.String()); return err == nil },
		owner:    prometheusOwner,
		observe:  observePrometheus,
		dial:     observabilityDialer(cfg),
		reported: reported{name: "prometheus", logf: logf}}
}

// observabilityDialer connects to the hub's Observability service with the
// node's current certificate.
func observabilityDialer(cfg EnrollConfig) func() (observabilityHub, func(), error) {
	return func() (observabilityHub, func(), error) {
		cc, done, err := hubConn(cfg)
		if err != nil {
			return nil, nil, err
		}
		return api.NewObservabilityClient(cc), func() { done(nil) }, nil
	}
}

// reported is a controller's last word, for node health (Reporter), logged
// when it changes.
type reported struct {
	name string
	logf func(string, ...any)

	mu    sync.Mutex
	state string
}

// State is what the controller last did.
func (r *reported) State() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func (r *reported) setState(s string) {
	r.mu.Lock()
	changed := r.state != s
	r.state = s
	r.mu.Unlock()
	if changed {
		r.logf("%s: %s", r.name, s)
	}
}

func prometheusOwner() (int, int, error) {
	u, err := user.Lookup(prometheusUser)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s (is Debian's prometheus in the role's image?): %w", prometheusUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, err
	}
	gid, err := strconv.Atoi(u.Gid)
	return uid, gid, err
}

func (*prometheusRunner) Name() string { return "prometheus" }

// Run acts every p.every until ctx ends; a failure is the supervisor's to
// retry (and shows in node health). After a refusal, or when the hub says
// the spec has no Prometheus, it asks again only after p.idle.
func (p *prometheusRunner) Run(ctx context.Context) error {
	for {
		p.mu.Lock()
		wait := p.nextTry.Sub(p.clock.Now())
		p.mu.Unlock()
		if wait > 0 && !sleep(ctx, p.clock, wait) {
			return nil
		}
		if err := p.once(ctx); err != nil {
			if errors.Is(err, errdefs.ErrPermission) || errors.Is(err, errdefs.ErrPrecondition) {
				p.mu.Lock()
				p.nextTry = p.clock.Now().Add(p.idle)
				p.mu.Unlock()
			}
			p.setState("failed: " + err.Error())
			return err
		}
		if !sleep(ctx, p.clock, p.every) {
			return nil
		}
	}
}

func (p *prometheusRunner) path(rel string) string { return filepath.Join(p.root, rel) }
func (p *prometheusRunner) obs(rel string) string {
	return p.path(path.Join(observability.DefaultDir, rel))
}

// once is one round: ask, write, start or reload.
func (p *prometheusRunner) once(ctx context.Context) error {
	req := &api.ObservabilityRequest{}
	key, err := p.readerKeyToRenew()
	if err != nil {
		return err
	}
	if key != nil {
		if req.CSR, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key); err != nil {
			return fmt.Errorf("prometheus: reader CSR: %w", err)
		}
	}
	hub, closeHub, err := p.dial()
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	res, err := hub.Config(ctx, req)
	closeHub()
	if err != nil {
		return fmt.Errorf("prometheus: the hub's configuration: %w", err)
	}
	if !res.Enabled {
		p.mu.Lock()
		p.nextTry = p.clock.Now().Add(p.idle)
		p.mu.Unlock()
		p.setState("the cluster's spec runs no Prometheus; asking again in " + p.idle.String())
		return nil
	}
	listen, err := netip.ParseAddrPort(res.Listen)
	if err != nil {
		return fmt.Errorf("prometheus: the hub's listen address %q: %w", clipString(res.Listen), err)
	}
	uid, gid, err := p.owner()
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	if key != nil {
		if err := p.writeReader(key, res.Certificate, uid, gid); err != nil {
			return err
		}
		if err := p.writeKubeCert(key, res.KubeCertificate); err != nil {
			return err
		}
	}
	reload, restart, err := p.writeFiles(res)
	if err != nil {
		return err
	}
	if restart {
		p.mu.Lock()
		p.daemonReload = true
		p.mu.Unlock()
	}
	if err := p.ensureDir(observability.DefaultDataDir, uid, gid, 0o750); err != nil {
		return err
	}
	targets := 0
	for name := range res.Files {
		if strings.HasPrefix(name, observability.DirTargets+"/kubedosd-") && len(res.Files[name]) > 4 {
			targets++
		}
	}
	if !p.hasAddr(listen.Addr()) {
		p.setState(fmt.Sprintf("waiting for wg-observability (%s) to listen on", listen.Addr()))
		return nil
	}
	p.mu.Lock()
	started, daemonReload := p.started, p.daemonReload
	p.mu.Unlock()
	if daemonReload {
		if err := p.units.DaemonReload(ctx); err != nil {
			return fmt.Errorf("prometheus: %w", err)
		}
		p.mu.Lock()
		p.daemonReload = false
		p.mu.Unlock()
		restart = true
	}
	units, err := p.units.ActiveUnits(ctx, []string{PrometheusUnit})
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	active := units[PrometheusUnit]
	switch {
	case !active || restart || !started:
		// Restart, not start: a Prometheus running with an older drop-in
		// (kubedosd restarted) takes the new one.
		if err := p.units.Restart(ctx, PrometheusUnit); err != nil {
			return fmt.Errorf("prometheus: start: %w", err)
		}
	case reload:
		if err := p.units.Reload(ctx, PrometheusUnit); err != nil {
			return fmt.Errorf("prometheus: reload: %w", err)
		}
	}
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	state := fmt.Sprintf("running on %s, scraping %d nodes", listen, targets)
	if p.observe != nil {
		// Prometheus may still be starting: said, not an error.
		seen, err := p.observe(ctx, listen)
		if err != nil {
			seen = "not answering yet: " + err.Error()
		}
		state += "; " + seen
	}
	p.setState(state)
	return nil
}

// readerKeyToRenew is a new key when the reader certificate is missing,
// unreadable, due for renewal (RenewAt) or not for the key on disk (a
// crash between writing the two); nil when the certificate is good.
func (p *prometheusRunner) readerKeyToRenew() (crypto.Signer, error) {
	cert, err := readCert(p.obs(observability.FileReaderCert))
	if err == nil && p.clock.Now().Before(RenewAt(cert)) && p.kubeCertGood(cert) {
		if k, kerr := readKey(p.obs(observability.FileReaderKey)); kerr == nil && publicKeysEqual(k.Public(), cert.PublicKey) {
			return nil, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("prometheus: reader key: %w", err)
	}
	return key, nil
}

// writeReader writes the new key, then its certificate: a crash between
// leaves a pair that does not match, which the next round renews.
func (p *prometheusRunner) writeReader(key crypto.Signer, certDER []byte, uid, gid int) error {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("prometheus: the hub's reader certificate: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return errors.New("prometheus: the hub's reader certificate is not for the key this node sent")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := p.ensureDir(path.Dir(path.Join(observability.DefaultDir, observability.FileReaderKey)), -1, -1, 0o755); err != nil {
		return err
	}
	// Readable by Prometheus's group only.
	kp := p.obs(observability.FileReaderKey)
	if err := durable.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o640); err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	if err := chownIf(kp, 0, gid); err != nil {
		return err
	}
	if err := durable.WriteFile(p.obs(observability.FileReaderCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644); err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	p.logf("prometheus: reader certificate %x (%s) until %s", cert.SerialNumber, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// writeFiles writes what changed of the hub's files and the CA and removes
// target files the hub no longer sends; reload when Prometheus must
// re-read its configuration or rules, restart when the drop-in changed.
func (p *prometheusRunner) writeFiles(res *api.ObservabilityResponse) (reload, restart bool, err error) {
	if len(res.Files) > api.MaxObservabilityFiles {
		return false, false, fmt.Errorf("prometheus: the hub sent %d files", len(res.Files))
	}
	if _, ok := res.Files[observability.FileConfig]; !ok {
		return false, false, fmt.Errorf("prometheus: the hub sent no %s", observability.FileConfig)
	}
	files := map[string][]byte{observability.FileCA: res.CA}
	if len(res.KubeCA) > 0 {
		if len(res.KubeCA) > maxObsFile {
			return false, false, fmt.Errorf("prometheus: the hub's Kubernetes CA is %d bytes", len(res.KubeCA))
		}
		files[observability.FileKubeCA] = res.KubeCA
	} else if err := os.Remove(p.obs(observability.FileKubeCA)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, false, err
	}
	for name, data := range res.Files {
		if !validObsFile(name) {
			return false, false, fmt.Errorf("prometheus: the hub sent a file named %q", clipString(name))
		}
		if len(data) > maxObsFile {
			return false, false, fmt.Errorf("prometheus: the hub's %s is %d bytes", name, len(data))
		}
		files[name] = data
	}
	for name, data := range files {
		dst := p.obs(name)
		if name == observability.FileDropIn {
			dst = p.path(PrometheusDropIn)
		}
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return false, false, err
		}
		if err := durable.WriteFile(dst, data, 0o644); err != nil {
			return false, false, fmt.Errorf("prometheus: %w", err)
		}
		switch {
		case name == observability.FileDropIn:
			restart = true
		case name == observability.FileConfig || name == observability.FileRules:
			reload = true
		}
	}
	stale, _ := filepath.Glob(p.obs(observability.DirTargets + "/*.json"))
	for _, f := range stale {
		if _, ok := files[observability.DirTargets+"/"+filepath.Base(f)]; !ok {
			if err := os.Remove(f); err != nil {
				return false, false, err
			}
		}
	}
	return reload, restart, nil
}

// validObsFile keeps a hub-sent path inside the observability directory
// and to the kinds of file it holds.
func validObsFile(name string) bool {
	if name == "" || len(name) > 128 || path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return false
	}
	switch {
	case name == observability.FileConfig, name == observability.FileRules, name == observability.FileDropIn:
		return true
	case strings.HasPrefix(name, observability.DirTargets+"/") && strings.HasSuffix(name, ".json"):
		return !strings.Contains(strings.TrimPrefix(name, observability.DirTargets+"/"), "/")
	}
	return false
}

// ensureDir makes dir (a node path) with mode, owned by uid:gid when not -1.
func (p *prometheusRunner) ensureDir(dir string, uid, gid int, mode os.FileMode) error {
	d := p.path(dir)
	if err := os.MkdirAll(d, mode); err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	return chownIf(d, uid, gid)
}

func chownIf(p string, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("prometheus: %w", err)
	}
	return nil
}

func readKey(p string) (crypto.Signer, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("%s: not PEM", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signer", p, k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
