package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/kubeplan"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// kubeFakeHub signs with real Kubernetes CAs over the reference spec and,
// like the hub, issues only once per fresh renewal.
type kubeFakeHub struct {
	t     *testing.T
	cas   *pki.KubeCAs
	spec  *spec.ClusterSpec
	node  spec.Node
	clock Clock

	mu       sync.Mutex
	renewals int
	fresh    bool
	issued   int
	keys     map[string]any // public key per certificate, last issuance
	refuse   error
	plan     *kubeplan.Plan // sent instead of the spec's when set
}

func (h *kubeFakeHub) renew(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.renewals++
	h.fresh = true
	return nil
}

func (h *kubeFakeHub) Holds(context.Context) (*api.KubeHoldsResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse != nil {
		return nil, h.refuse
	}
	out := &api.KubeHoldsResponse{}
	if h.plan != nil {
		out.Plan = h.plan
	} else if p, err := kubeplan.For(spec.WithDefaults(h.spec), h.node.Name); err == nil {
		out.Plan = p
	}
	if out.Plan != nil {
		out.KubernetesCA = h.cas.Kubernetes.Certificate().Raw
	}
	for _, c := range pki.KubeCertsFor(h.spec, h.node.Role) {
		out.Certificates = append(out.Certificates, string(c))
	}
	return out, nil
}

func (h *kubeFakeHub) Issue(_ context.Context, r *api.KubeCertsRequest) (*api.KubeCertsResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.fresh {
		h.t.Error("issuance asked for without a fresh renewal")
		return nil, errors.New("not fresh")
	}
	h.fresh = false
	life, _ := h.spec.Workloads.Kubernetes.Lifetimes()
	out := &api.KubeCertsResponse{Certificates: map[string][]byte{}, KubernetesCA: h.cas.Kubernetes.Certificate().Raw,
		EtcdCA: h.cas.Etcd.Certificate().Raw, FrontProxyCA: h.cas.FrontProxy.Certificate().Raw}
	h.keys = map[string]any{}
	for name, csr := range r.CSRs {
		c, err := h.cas.Sign(pki.KubeIssue{Spec: h.spec, Node: h.node, Kind: pki.KubeCert(name), CSR: csr, Life: life, Now: h.clock.Now()})
		if err != nil {
			return nil, err
		}
		out.Certificates[name] = c.Raw
		h.keys[name] = c.PublicKey
	}
	if h.node.Role == spec.RoleControlPlane {
		out.ServiceAccountKey, out.ServiceAccountPub = h.cas.SAKeyPEM, h.cas.SAPubPEM
	}
	h.issued++
	return out, nil
}

func (h *kubeFakeHub) count() (renewals, issued int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.renewals, h.issued
}

func newKubeTest(t *testing.T, node string) (*kubePKI, *kubeFakeHub, *fakeClock) {
	t.Helper()
	s, err := spec.Load(filepath.Join("..", "..", "examples", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.NodeByName(node)
	clock := newFakeClock()
	cas, err := pki.InitKubeKeys(t.TempDir(), "test", clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := &kubeFakeHub{t: t, cas: cas, spec: s, node: n, clock: clock}
	k := &kubePKI{dir: filepath.Join(t.TempDir(), "kubernetes", "pki"), clock: clock, logf: t.Logf, idle: kubeIdle, renew: h.renew,
		dial: func() (kubeCertsHub, func(), error) { return h, func() {}, nil }}
	return k, h, clock
}

// parked waits until the controller sleeps on the fake clock (its cycle is
// over), for at most a few seconds of real time.
func parked(t *testing.T, clock *fakeClock) {
	t.Helper()
	select {
	case <-clock.parked:
	case <-time.After(10 * time.Second):
		t.Fatal("the controller never went to sleep")
	}
}

func readKeyPub(t *testing.T, p string) any {
	t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey).Public()
}

func TestKubePKIWorker(t *testing.T) {
	k, h, clock := newKubeTest(t, "w-1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	defer func() { cancel(); <-done }()

	parked(t, clock) // the first cycle is done: the loop sleeps until the next
	if _, n := h.count(); n != 1 {
		t.Fatalf("%d issuances, want 1", n)
	}
	for _, name := range []string{"kubelet-client", "kubelet-serving"} {
		fi, err := os.Stat(filepath.Join(k.dir, name+".key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: %v (want 0600)", name, err)
		}
		c, err := readCert(filepath.Join(k.dir, name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		if !c.PublicKey.(*ecdsa.PublicKey).Equal(readKeyPub(t, filepath.Join(k.dir, name+".key"))) {
			t.Errorf("%s: certificate and key on disk do not match", name)
		}
	}
	for _, f := range []string{"ca.crt", "etcd-ca.crt", "front-proxy-ca.crt"} {
		if _, err := readCert(filepath.Join(k.dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(k.dir, "sa.key")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a worker has the service-account key")
	}
	// The hub's plan for the node is kept beside the certificates, where
	// the kubernetes controller reads it.
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(k.dir), "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	var plan kubeplan.Plan
	if err := json.Unmarshal(raw, &plan); err != nil || plan.Node != "w-1" || plan.NodePodCIDR == "" {
		t.Errorf("plan.json: %v %+v", err, plan)
	}
	keyBefore := readKeyPub(t, filepath.Join(k.dir, "kubelet-client.key"))
	client, _ := readCert(filepath.Join(k.dir, "kubelet-client.crt"))

	// Nothing happens before the kubelet client certificate (1 h) is two
	// thirds through its life; then a fresh renewal, then the certificates.
	clock.Advance(30 * time.Minute)
	if r, n := h.count(); r != 1 || n != 1 {
		t.Fatalf("after 30 minutes: %d renewals, %d issuances; want 1, 1", r, n)
	}
	clock.Advance(11 * time.Minute)
	parked(t, clock)
	if r, n := h.count(); r != 2 || n != 2 {
		t.Errorf("%d renewals, %d issuances; want 2, 2", r, n)
	}
	if c, err := readCert(filepath.Join(k.dir, "kubelet-client.crt")); err != nil || c.Equal(client) {
		t.Errorf("kubelet client certificate not renewed: %v", err)
	}
	if !readKeyPub(t, filepath.Join(k.dir, "kubelet-client.key")).(*ecdsa.PublicKey).Equal(keyBefore) {
		t.Error("the key changed: a unit could read a certificate beside a key it does not match")
	}
}

func TestKubePKIControlPlaneGetsSAKey(t *testing.T) {
	k, h, clock := newKubeTest(t, "cp-1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	defer func() { cancel(); <-done }()
	parked(t, clock)
	if fi, err := os.Stat(filepath.Join(k.dir, "sa.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("sa.key: %v, want 0600", err)
	}
	if _, err := readCert(filepath.Join(k.dir, "apiserver.crt")); err != nil {
		t.Error(err)
	}
	if _, n := h.count(); n != 1 {
		t.Errorf("%d issuances, want 1", n)
	}
}

// TestKubePKIRefusedWaits: a refusal ends the run with the error (node
// health shows it) and the next run waits before asking again.
func TestKubePKIRefusedWaits(t *testing.T) {
	k, h, clock := newKubeTest(t, "w-1")
	h.refuse = errdefs.New(errdefs.ErrPrecondition, "node w-1 is fenced")
	if err := k.Run(context.Background()); !errors.Is(err, errdefs.ErrPrecondition) {
		t.Fatalf("run: %v", err)
	}
	if got := k.due(); !got.Equal(clock.Now().Add(kubeIdle)) {
		t.Errorf("next try at %v, want now + %v", got, kubeIdle)
	}
	if r, n := h.count(); r != 0 || n != 0 {
		t.Errorf("%d renewals, %d issuances after a refusal", r, n)
	}
}

// A plan from the hub that does not validate fails the cycle with what is
// wrong, and leaves no plan for the kubernetes controller to run.
func TestKubePKIRefusesBadPlan(t *testing.T) {
	k, h, _ := newKubeTest(t, "w-1")
	p, err := kubeplan.For(spec.WithDefaults(h.spec), "w-1")
	if err != nil {
		t.Fatal(err)
	}
	p.NodeIP = "10.0.0.1 --allow-privileged=true"
	h.plan = p
	if err := k.cycle(context.Background()); err == nil || !strings.Contains(err.Error(), "nodeIP") {
		t.Fatalf("a bad plan: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(k.dir), "plan.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a bad plan was written: %v", err)
	}
}

// TestKubePKILoadBalancer: a load balancer holds no certificate, so it
// never re-attests for one; it keeps the hub's plan and the Kubernetes CA
// (haproxy checks the API servers against it) and asks again after idle.
func TestKubePKILoadBalancer(t *testing.T) {
	k, h, clock := newKubeTest(t, "lb-3")
	if err := k.cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if renewals, issued := h.count(); renewals != 0 || issued != 0 {
		t.Errorf("%d renewals, %d issuances for a role that holds no certificate", renewals, issued)
	}
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(k.dir), "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p kubeplan.Plan
	if err := json.Unmarshal(raw, &p); err != nil || p.LB == nil || p.LB.Priority != kubeplan.MaxVRRPPriority-2 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	ca, err := readCert(filepath.Join(k.dir, "ca.crt"))
	if err != nil || !ca.Equal(h.cas.Kubernetes.Certificate()) {
		t.Fatalf("ca.crt: %v", err)
	}
	if due := k.due(); !due.Equal(clock.Now().Add(kubeIdle)) {
		t.Errorf("asks again at %s, want after %s", due, kubeIdle)
	}

	// A plan without a CA certificate (or with a leaf) writes nothing.
	k2, h2, _ := newKubeTest(t, "lb-3")
	k2.dial = func() (kubeCertsHub, func(), error) { return noCAHub{h2}, func() {}, nil }
	if err := k2.cycle(context.Background()); err == nil || !strings.Contains(err.Error(), "Kubernetes CA") {
		t.Fatalf("no CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(k2.dir), "plan.json")); err == nil {
		t.Error("a plan without its CA was kept")
	}
}

// noCAHub answers Holds without the CA.
type noCAHub struct{ *kubeFakeHub }

func (h noCAHub) Holds(ctx context.Context) (*api.KubeHoldsResponse, error) {
	out, err := h.kubeFakeHub.Holds(ctx)
	if out != nil {
		out.KubernetesCA = nil
	}
	return out, err
}
