package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// KubePKISubdir (under the node's StateDir, the state partition) holds the
// Kubernetes keys and certificates the node's Kubernetes units read:
// <name>.key (0600, made here, never sent) and <name>.crt for each
// certificate its role holds, ca.crt, etcd-ca.crt, front-proxy-ca.crt, and
// on control-plane nodes sa.key and sa.pub. docs/kubernetes.md.
const KubePKISubdir = "kubernetes/pki"

// runsKubernetes reports whether a node of role runs Kubernetes components:
// the ones that hold certificates (pki.KubeCertsFor), and the load
// balancers in front of the API servers, which hold none but get their
// plan the same way.
func runsKubernetes(role string) bool {
	switch spec.Role(role) {
	case spec.RoleWorker, spec.RoleControlPlane, spec.RoleEtcd, spec.RoleLoadBalancer:
		return true
	}
	return false
}

// kubeCertsHub is what the controller needs of the hub (api.KubeCertsClient).
type kubeCertsHub interface {
	Holds(ctx context.Context) (*api.KubeHoldsResponse, error)
	Issue(ctx context.Context, r *api.KubeCertsRequest) (*api.KubeCertsResponse, error)
}

// kubePKI is the controller that keeps the node's Kubernetes certificates:
// when the first of them is two thirds through its life (or missing), it
// re-attests (a renewal with a fresh quote) and, at once, with the
// certificate that renewal gave it, asks the hub for its role's
// certificates. The hub issues only on a certificate that fresh, so no
// Kubernetes certificate exists without a fresh quote behind it.
type kubePKI struct {
	dir   string
	clock Clock
	logf  func(string, ...any)
	// renew re-attests; Renew with the node's EnrollConfig in kubedosd.
	renew func(ctx context.Context) error
	// dial connects to the hub with the node's current certificate.
	dial func() (kubeCertsHub, func(), error)

	// idle paces asking again when the hub issues none, or refused.
	idle time.Duration

	mu      sync.Mutex
	held    []string  // what the hub last said the role holds
	nextTry time.Time // not before, after a refusal
}

// kubeIdle is how long the controller waits before asking a hub that
// issues no Kubernetes certificates, or refused, again.
const kubeIdle = 10 * time.Minute

func newKubePKI(cfg EnrollConfig, dir string, clock Clock, logf func(string, ...any)) *kubePKI {
	return &kubePKI{dir: dir, clock: clock, logf: logf, idle: kubeIdle,
		renew: func(ctx context.Context) error { _, err := Renew(ctx, cfg); return err },
		dial: func() (kubeCertsHub, func(), error) {
			cc, err := dialHubAsNode(cfg)
			if err != nil {
				return nil, nil, err
			}
			return api.NewKubeCertsClient(cc), func() { cc.Close() }, nil
		}}
}

func (*kubePKI) Name() string { return "kubernetes-pki" }

// Run renews the certificates when due until ctx ends. A refused renewal
// is fatal (the node is quarantined), as in the renewal controller; any
// other failure is the supervisor's to retry, and shows in `node health`.
func (k *kubePKI) Run(ctx context.Context) error {
	for {
		if !sleep(ctx, k.clock, k.due().Sub(k.clock.Now())) {
			return nil
		}
		if err := k.cycle(ctx); err != nil {
			if kubeRefused(err) && !errors.As(err, new(fatalError)) {
				// A refusal: the supervisor records it (node health) and
				// restarts us, and due waits idle before asking again.
				k.mu.Lock()
				k.nextTry = k.clock.Now().Add(k.idle)
				k.mu.Unlock()
			}
			return err
		}
	}
}

// due is when the first certificate the role holds reaches RenewAt; now if
// one is missing or unreadable, or the role's set is not known yet.
func (k *kubePKI) due() time.Time {
	k.mu.Lock()
	held, next := slices.Clone(k.held), k.nextTry
	k.mu.Unlock()
	now := k.clock.Now()
	if next.After(now) {
		return next
	}
	if len(held) == 0 {
		return now
	}
	var first time.Time
	for _, name := range held {
		c, err := readCert(filepath.Join(k.dir, name+".crt"))
		if err != nil {
			return now
		}
		if at := RenewAt(c); first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

// cycle: which certificates, keys and CSRs for them, a fresh quote, the
// certificates.
func (k *kubePKI) cycle(ctx context.Context) error {
	hub, closeHub, err := k.dial()
	if err != nil {
		return fmt.Errorf("kubernetes certificates: %w", err)
	}
	holds, err := hub.Holds(ctx)
	closeHub()
	if err != nil {
		return fmt.Errorf("kubernetes certificates: which to hold: %w", err)
	}
	if len(holds.Certificates) == 0 {
		if holds.Plan != nil {
			// A load balancer: no certificate, no quote needed; its plan
			// and the CA it checks the API servers against, asked for
			// again every idle (how soon a changed spec reaches it).
			if err := k.writePlanOnly(holds); err != nil {
				return err
			}
		} else {
			k.logf("kubernetes certificates: the hub issues none to this node now; asking again in %s", k.idle)
		}
		k.mu.Lock()
		k.held, k.nextTry = nil, k.clock.Now().Add(k.idle)
		k.mu.Unlock()
		return nil
	}
	if len(holds.Certificates) > api.MaxKubeCSRs {
		return fmt.Errorf("kubernetes certificates: the hub says this role holds %d", len(holds.Certificates))
	}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return err
	}
	req := &api.KubeCertsRequest{CSRs: map[string][]byte{}}
	keys := map[string]crypto.Signer{}
	for _, name := range holds.Certificates {
		if !validKubeName(name) {
			return fmt.Errorf("kubernetes certificates: the hub named %q", clipString(name))
		}
		key, err := k.key(name)
		if err != nil {
			return err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return fmt.Errorf("kubernetes certificates: %s: %w", name, err)
		}
		req.CSRs[name], keys[name] = der, key
	}
	if err := k.renew(ctx); err != nil {
		if errors.Is(err, errdefs.ErrPermission) {
			return Fatal(fmt.Errorf("kubernetes certificates: renewal refused: %w", err))
		}
		return fmt.Errorf("kubernetes certificates: renewal: %w", err)
	}
	hub, closeHub, err = k.dial() // with the certificate the fresh quote gave
	if err != nil {
		return fmt.Errorf("kubernetes certificates: %w", err)
	}
	res, err := hub.Issue(ctx, req)
	closeHub()
	if err != nil {
		return fmt.Errorf("kubernetes certificates: issue: %w", err)
	}
	if err := k.write(res, keys); err != nil {
		return err
	}
	if err := k.writePlan(holds.Plan); err != nil {
		return err
	}
	k.mu.Lock()
	k.held = slices.Clone(holds.Certificates)
	k.mu.Unlock()
	return nil
}

// key is the node's key for certificate name, made (P-256) and written
// 0600 the first time and kept after: a unit never sees a certificate
// beside a key it does not match.
func (k *kubePKI) key(name string) (crypto.Signer, error) {
	p := filepath.Join(k.dir, name+".key")
	if raw, err := os.ReadFile(p); err == nil {
		if b, _ := pem.Decode(raw); b != nil && b.Type == "PRIVATE KEY" {
			if key, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
				if s, ok := key.(*ecdsa.PrivateKey); ok && s.Curve == elliptic.P256() {
					return s, nil
				}
			}
		}
		k.logf("kubernetes certificates: %s is unreadable; making a new key", p)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// write checks each certificate is for the key made for it and chains to
// the CA the hub names, then writes them and the CAs.
func (k *kubePKI) write(res *api.KubeCertsResponse, keys map[string]crypto.Signer) error {
	cas := map[string][]byte{"ca.crt": res.KubernetesCA, "etcd-ca.crt": res.EtcdCA, "front-proxy-ca.crt": res.FrontProxyCA}
	pool := x509.NewCertPool()
	for name, der := range cas {
		c, err := x509.ParseCertificate(der)
		if err != nil || !c.IsCA {
			return fmt.Errorf("kubernetes certificates: the hub's %s is not a CA certificate", name)
		}
		pool.AddCert(c)
	}
	files := map[string][]byte{}
	var until []string
	for name, key := range keys {
		c, err := x509.ParseCertificate(res.Certificates[name])
		if err != nil {
			return fmt.Errorf("kubernetes certificates: %s: %w", name, err)
		}
		if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
			return fmt.Errorf("kubernetes certificates: %s is not for the key made for it", name)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: k.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("kubernetes certificates: %s: %w", name, err)
		}
		files[name+".crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		until = append(until, fmt.Sprintf("%s until %s", name, c.NotAfter.UTC().Format(time.RFC3339)))
	}
	for name, der := range cas {
		files[name] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	if len(res.ServiceAccountPub) > 0 {
		files["sa.pub"] = res.ServiceAccountPub
	}
	for name, data := range files {
		if err := durable.WriteFile(filepath.Join(k.dir, name), data, 0o644); err != nil {
			return err
		}
	}
	if len(res.ServiceAccountKey) > 0 {
		if err := durable.WriteFile(filepath.Join(k.dir, "sa.key"), res.ServiceAccountKey, 0o600); err != nil {
			return err
		}
	}
	slices.Sort(until)
	k.logf("kubernetes certificates after a fresh quote: %s", strings.Join(until, ", "))
	return nil
}

// writePlan keeps the hub's plan for the node beside the certificates (the
// kubernetes controller runs from it); a plan that does not validate is
// an error naming what is wrong, and nothing is written.
func (k *kubePKI) writePlan(p *kubeplan.Plan) error {
	if p == nil {
		return nil
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("kubernetes: the hub's plan: %w", err)
	}
	raw, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(filepath.Dir(k.dir), filepath.Base(kubeplan.PlanFile)), append(raw, '\n'), 0o644)
}

// writePlanOnly keeps the plan of a node that holds no certificate, and
// the Kubernetes CA (ca.crt) sent with it, once it is a CA certificate.
func (k *kubePKI) writePlanOnly(holds *api.KubeHoldsResponse) error {
	c, err := x509.ParseCertificate(holds.KubernetesCA)
	if err != nil || !c.IsCA {
		return fmt.Errorf("kubernetes: the hub's plan came without the Kubernetes CA certificate")
	}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return err
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	if old, err := os.ReadFile(filepath.Join(k.dir, "ca.crt")); err != nil || !bytes.Equal(old, ca) {
		if err := durable.WriteFile(filepath.Join(k.dir, "ca.crt"), ca, 0o644); err != nil {
			return err
		}
	}
	before, _ := os.ReadFile(filepath.Join(filepath.Dir(k.dir), filepath.Base(kubeplan.PlanFile)))
	if err := k.writePlan(holds.Plan); err != nil {
		return err
	}
	if after, _ := os.ReadFile(filepath.Join(filepath.Dir(k.dir), filepath.Base(kubeplan.PlanFile))); !bytes.Equal(before, after) {
		k.logf("kubernetes: the hub's plan for this node (it holds no certificate): %v", holds.Plan.Components)
	}
	return nil
}

func readCert(p string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", p)
	}
	return x509.ParseCertificate(b.Bytes)
}

// validKubeName keeps a hub-sent name a plain file name.
func validKubeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// kubeRefused reports whether the hub said no (rather than was away): the
// controller then waits idle before asking again, so a refused node does
// not fill the hub's audit log. It reads errdefs classes, which the client
// interceptor gives every call's error.
func kubeRefused(err error) bool {
	for _, c := range []error{errdefs.ErrPermission, errdefs.ErrPrecondition, errdefs.ErrInvalid, errdefs.ErrNotFound, errdefs.ErrUnauthenticated} {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}
