package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// kubeEnv is an env whose hub holds Kubernetes CAs, over the reference
// spec (w-1 worker, cp-1 controlplane, etcd-1 etcd).
type kubeEnv struct {
	*env
	cas *pki.KubeCAs
}

func newKubeEnv(t *testing.T) *kubeEnv {
	t.Helper()
	e := newEnv(t)
	s, err := spec.Load(filepath.Join("..", "..", "examples", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e.spec = s
	e.policy["cp-1"] = "controlplane"
	e.policy["etcd-1"] = "etcd"
	cas, err := pki.InitKubeKeys(t.TempDir(), "test", t0)
	if err != nil {
		t.Fatal(err)
	}
	ke := &kubeEnv{env: e, cas: cas}
	ke.newKubeHub()
	return ke
}

func (ke *kubeEnv) newKubeHub() {
	ke.t.Helper()
	iss, err := NewKubeIssuer(ke.cas, 0)
	if err != nil {
		ke.t.Fatal(err)
	}
	h, err := New(Options{Store: ke.store, CA: ke.ca, Verifier: ke.ver, Policy: ke.policy, CertLifetime: 6 * time.Hour,
		Now: ke.clock.Now, Spec: ke.spec, Kube: iss})
	if err != nil {
		ke.t.Fatal(err)
	}
	ke.hub = h
}

// peerOf authenticates an issued node certificate as the TLS edge does and
// says when the hub issued it.
func (ke *kubeEnv) peerOf(got *Enrolled) (pki.Peer, time.Time) {
	ke.t.Helper()
	p, err := ke.ca.Authenticate(got.Cert, ke.clock.Now(), ke.hub.Revocations())
	if err != nil {
		ke.t.Fatal(err)
	}
	return p, got.Cert.NotBefore.Add(pki.Backdate)
}

// renewNode renews n with a fresh quote (pcrs overrides its PCRs).
func (ke *kubeEnv) renewNode(n *node, p pki.Peer, pcrs map[int]string) (*Enrolled, error) {
	ctx := context.Background()
	nonce, err := ke.hub.BeginRenewal(ctx, p)
	if err != nil {
		return nil, err
	}
	vals := n.pcrs
	if pcrs != nil {
		vals = map[int]measure.Digest{}
		for i, v := range n.pcrs {
			vals[i] = v
		}
		for i, s := range pcrs {
			vals[i] = digest(s)
		}
	}
	return ke.hub.Renew(ctx, p, EnrollRequest{Session: nonce.Session, Nonce: nonce.Value, Evidence: n.tpm.quote(nonce.Value, vals, n.log),
		BuildID: n.buildID, CSR: n.csrDER(ke.t)})
}

// csrs makes one CSR per kind, each claiming cluster-admin and cp-1's name.
func hostileCSRs(t *testing.T, kinds ...pki.KubeCert) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, k := range kinds {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: "system:node:cp-1", Organization: []string{"system:masters"}},
			DNSNames: []string{"cp-1", "kubernetes"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		out[string(k)] = der
	}
	return out
}

func (ke *kubeEnv) enrolled(name, role string) (*node, *Enrolled) {
	n := newNode(ke.t, name, role)
	ke.register(n)
	return n, ke.mustEnroll(n)
}

func TestKubeCertsWorker(t *testing.T) {
	ke := newKubeEnv(t)
	_, got := ke.enrolled("w-1", "worker")
	p, at := ke.peerOf(got)
	out, err := ke.hub.IssueKubeCerts(context.Background(), p, at, hostileCSRs(t, pki.KubeletClient, pki.KubeletServing))
	if err != nil {
		t.Fatal(err)
	}
	client := out.Certs[pki.KubeletClient]
	if client == nil || client.Subject.CommonName != "system:node:w-1" || !slices.Equal(client.Subject.Organization, []string{"system:nodes"}) {
		t.Fatalf("kubelet client certificate %+v: want the hub-set system:node:w-1 / system:nodes, never the CSR's claims", client)
	}
	if got := client.NotAfter.Sub(ke.clock.Now()); got != time.Hour {
		t.Errorf("kubelet client life %v, want 1h", got)
	}
	serving := out.Certs[pki.KubeletServing]
	if slices.Contains(serving.DNSNames, "cp-1") || slices.Contains(serving.DNSNames, "kubernetes") {
		t.Errorf("serving SANs %v carry the CSR's names", serving.DNSNames)
	}
	pool := x509.NewCertPool()
	pool.AddCert(out.KubernetesCA)
	for kind, c := range out.Certs {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: ke.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
	if out.SAKeyPEM != nil {
		t.Error("a worker got the service-account key")
	}
	a := ke.lastAudit()
	if a.Action != ActionKubeCerts || a.Outcome != OutcomeOK || a.Actor != "node:w-1" ||
		!strings.Contains(a.Detail, pki.SerialString(client.SerialNumber)) {
		t.Errorf("audit %+v: want the issuance with its serials", a)
	}
}

func TestKubeCertsControlPlane(t *testing.T) {
	ke := newKubeEnv(t)
	_, got := ke.enrolled("cp-1", "controlplane")
	p, at := ke.peerOf(got)
	kinds := pki.KubeCertsFor(ke.spec, spec.RoleControlPlane)
	out, err := ke.hub.IssueKubeCerts(context.Background(), p, at, hostileCSRs(t, kinds...))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Certs) != len(kinds) || out.SAKeyPEM == nil || out.SAPubPEM == nil {
		t.Fatalf("got %d certificates, SA key %v; want %d and the SA key", len(out.Certs), out.SAKeyPEM != nil, len(kinds))
	}
	if c := out.Certs[pki.APIServerEtcdClient]; c.CheckSignatureFrom(out.EtcdCA) != nil {
		t.Error("apiserver-etcd-client is not signed by the etcd CA")
	}
	if c := out.Certs[pki.FrontProxyClient]; c.CheckSignatureFrom(out.FrontProxy) != nil {
		t.Error("front-proxy-client is not signed by the front-proxy CA")
	}
	if !strings.Contains(ke.lastAudit().Detail, "service-account key pair delivered") {
		t.Error("the service-account key delivery is not audited")
	}
}

// TestKubeCertsRefused: the attacks. Each is refused, audited, and issues
// nothing.
func TestKubeCertsRefused(t *testing.T) {
	ctx := context.Background()
	worker := func(ke *kubeEnv) (*node, pki.Peer, time.Time) {
		n, got := ke.enrolled("w-1", "worker")
		p, at := ke.peerOf(got)
		return n, p, at
	}
	for _, tc := range []struct {
		name string
		// setup returns the caller and when its certificate was issued.
		setup func(ke *kubeEnv) (pki.Peer, time.Time)
		csrs  []pki.KubeCert
		want  error
	}{
		{"admin", func(ke *kubeEnv) (pki.Peer, time.Time) { return admin, ke.clock.Now() }, []pki.KubeCert{pki.APIServer}, ErrForbidden},
		{"operator", func(ke *kubeEnv) (pki.Peer, time.Time) { return operator, ke.clock.Now() }, []pki.KubeCert{pki.KubeletClient}, ErrForbidden},
		{"reader", func(ke *kubeEnv) (pki.Peer, time.Time) { return reader, ke.clock.Now() }, []pki.KubeCert{pki.KubeletClient}, ErrForbidden},
		{"worker asks apiserver", func(ke *kubeEnv) (pki.Peer, time.Time) { _, p, at := worker(ke); return p, at },
			[]pki.KubeCert{pki.KubeletClient, pki.APIServer}, ErrForbidden},
		{"worker asks etcd peer", func(ke *kubeEnv) (pki.Peer, time.Time) { _, p, at := worker(ke); return p, at },
			[]pki.KubeCert{pki.EtcdPeer}, ErrForbidden},
		{"worker asks controller-manager", func(ke *kubeEnv) (pki.Peer, time.Time) { _, p, at := worker(ke); return p, at },
			[]pki.KubeCert{pki.ControllerManager}, ErrForbidden},
		{"node claims another node's name", func(ke *kubeEnv) (pki.Peer, time.Time) {
			ke.enrolled("w-2", "worker")
			_, p, at := worker(ke)
			p.Name = "w-2" // w-1's certificate presented as w-2's: not w-2's newest
			return p, at
		}, []pki.KubeCert{pki.KubeletClient}, ErrState},
		{"revoked", func(ke *kubeEnv) (pki.Peer, time.Time) {
			_, p, at := worker(ke)
			if err := ke.hub.Revoke(ctx, operator, "w-1", "test"); err != nil {
				t.Fatal(err)
			}
			return p, at
		}, []pki.KubeCert{pki.KubeletClient}, ErrState},
		{"fenced", func(ke *kubeEnv) (pki.Peer, time.Time) {
			_, p, at := worker(ke)
			if err := ke.hub.Fence(ctx, operator, "w-1", "test"); err != nil {
				t.Fatal(err)
			}
			return p, at
		}, []pki.KubeCert{pki.KubeletClient}, ErrState},
		{"quarantined by a failed renewal", func(ke *kubeEnv) (pki.Peer, time.Time) {
			n, p, at := worker(ke)
			if _, err := ke.renewNode(n, p, map[int]string{4: "another boot loader"}); !errors.Is(err, ErrEvidence) {
				t.Fatalf("bad renewal: %v", err)
			}
			return p, at
		}, []pki.KubeCert{pki.KubeletClient}, ErrState},
		{"stale: no fresh quote", func(ke *kubeEnv) (pki.Peer, time.Time) {
			_, p, at := worker(ke)
			ke.clock.Advance(DefaultKubeFreshness + time.Second)
			return p, at
		}, []pki.KubeCert{pki.KubeletClient}, ErrState},
		{"an older certificate after a renewal", func(ke *kubeEnv) (pki.Peer, time.Time) {
			n, p, at := worker(ke)
			if _, err := ke.renewNode(n, p, nil); err != nil {
				t.Fatal(err)
			}
			return p, at
		}, []pki.KubeCert{pki.KubeletClient}, ErrState},
		{"no requests", func(ke *kubeEnv) (pki.Peer, time.Time) { _, p, at := worker(ke); return p, at }, nil, ErrInvalid},
		{"garbage CSR", func(ke *kubeEnv) (pki.Peer, time.Time) { _, p, at := worker(ke); return p, at }, []pki.KubeCert{"garbage"}, ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ke := newKubeEnv(t)
			p, at := tc.setup(ke)
			out, err := ke.hub.IssueKubeCerts(ctx, p, at, hostileCSRs(t, tc.csrs...))
			if !errors.Is(err, tc.want) || out != nil {
				t.Fatalf("got %v, %v; want %v and nothing issued", out, err, tc.want)
			}
			a := ke.lastAudit()
			if a.Action != ActionKubeCerts || a.Outcome == OutcomeOK {
				t.Errorf("audit %+v: want the refusal recorded", a)
			}
		})
	}
}

// TestKubeCertsOneQuoteOneIssuance: a fresh certificate is spent by one
// issuance; the next needs another fresh quote.
func TestKubeCertsOneQuoteOneIssuance(t *testing.T) {
	ke := newKubeEnv(t)
	ctx := context.Background()
	n, got := ke.enrolled("w-1", "worker")
	p, at := ke.peerOf(got)
	if _, err := ke.hub.IssueKubeCerts(ctx, p, at, hostileCSRs(t, pki.KubeletClient)); err != nil {
		t.Fatal(err)
	}
	if _, err := ke.hub.IssueKubeCerts(ctx, p, at, hostileCSRs(t, pki.KubeletClient)); !errors.Is(err, ErrState) {
		t.Fatalf("second issuance on one quote: %v, want ErrState", err)
	}
	ke.clock.Advance(40 * time.Minute)
	renewed, err := ke.renewNode(n, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2, at2 := ke.peerOf(renewed)
	out, err := ke.hub.IssueKubeCerts(ctx, p2, at2, hostileCSRs(t, pki.KubeletClient))
	if err != nil {
		t.Fatalf("after a fresh renewal: %v", err)
	}
	if nb := out.Certs[pki.KubeletClient].NotBefore; !nb.Equal(ke.clock.Now().Add(-pki.Backdate)) {
		t.Errorf("renewed kubelet client starts %v, want now - backdate", nb)
	}
}

func TestKubeCertsHeld(t *testing.T) {
	ke := newKubeEnv(t)
	ctx := context.Background()
	_, got := ke.enrolled("etcd-1", "etcd")
	p, _ := ke.peerOf(got)
	held, err := ke.hub.KubeCertsHeld(ctx, p)
	if err != nil || !slices.Equal(held.Certs, []pki.KubeCert{pki.EtcdServer, pki.EtcdPeer}) {
		t.Fatalf("etcd node holds %v, %v", held.Certs, err)
	}
	if pl := held.Plan; pl == nil || pl.Node != "etcd-1" || !slices.Equal(pl.Components, []kubeplan.Component{kubeplan.Etcd}) || len(pl.EtcdMembers) != 3 {
		t.Errorf("etcd node's plan %+v, want etcd-1 running etcd with 3 members", pl)
	}
	if _, err := ke.hub.KubeCertsHeld(ctx, operator); !errors.Is(err, ErrForbidden) {
		t.Errorf("operator: %v, want ErrForbidden", err)
	}
	if err := ke.hub.Fence(ctx, operator, "etcd-1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := ke.hub.KubeCertsHeld(ctx, p); !errors.Is(err, ErrState) {
		t.Errorf("fenced: %v, want ErrState", err)
	}
}

// TestKubeCertsHeldNone: a hub without Kubernetes CAs tells nodes they hold
// nothing, without an audit entry per question.
func TestKubeCertsHeldNone(t *testing.T) {
	ke := newKubeEnv(t)
	_, got := ke.enrolled("w-1", "worker")
	p, _ := ke.peerOf(got)
	ke.newHub() // the same state, no Kubernetes CAs
	before := ke.lastAudit().Seq
	held, err := ke.hub.KubeCertsHeld(context.Background(), p)
	if err != nil || len(held.Certs) != 0 || held.Plan != nil || ke.lastAudit().Seq != before {
		t.Fatalf("held %v (plan %v), %v, audit %d → %d", held.Certs, held.Plan, err, before, ke.lastAudit().Seq)
	}
}

// TestKubePlanFromHub: the hub tells each node what it runs, from its own
// spec: a worker its kubelet and kube-proxy plan with its pod subnet, the
// master (a role that runs no component) nothing; a node the hub would
// not issue to (revoked, or a certificate of another role) no plan at all.
func TestKubePlanFromHub(t *testing.T) {
	ke := newKubeEnv(t)
	ctx := context.Background()
	_, got := ke.enrolled("w-1", "worker")
	p, _ := ke.peerOf(got)
	held, err := ke.hub.KubeCertsHeld(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := kubeplan.For(ke.spec, "w-1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(held.Certs, []pki.KubeCert{pki.KubeletClient, pki.KubeletServing, pki.KubeProxy}) {
		t.Errorf("worker holds %v", held.Certs)
	}
	if pl := held.Plan; pl == nil || !reflect.DeepEqual(pl, want) || pl.NodePodCIDR == "" ||
		!slices.Equal(pl.Components, []kubeplan.Component{kubeplan.Kubelet, kubeplan.Proxy}) {
		t.Fatalf("worker's plan %+v, want %+v", pl, want)
	}
	if err := held.Plan.Validate(); err != nil {
		t.Errorf("the hub's plan does not validate on the node: %v", err)
	}

	_, mgot := ke.enrolled("master", "master")
	mp, _ := ke.peerOf(mgot)
	held, err = ke.hub.KubeCertsHeld(ctx, mp)
	if err != nil || len(held.Certs) != 0 || held.Plan != nil {
		t.Errorf("master: %v, plan %+v, %v; want nothing", held.Certs, held.Plan, err)
	}

	// A certificate whose role is not the node's spec role.
	liar := p
	liar.NodeRole = "controlplane"
	if held, err := ke.hub.KubeCertsHeld(ctx, liar); !errors.Is(err, ErrForbidden) || held.Plan != nil {
		t.Errorf("certificate of another role: plan %v, %v; want ErrForbidden", held.Plan, err)
	}
	if err := ke.hub.Revoke(ctx, operator, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	held, err = ke.hub.KubeCertsHeld(ctx, p)
	if !errors.Is(err, ErrState) || held.Plan != nil {
		t.Errorf("revoked: plan %v, %v; want ErrState and none", held.Plan, err)
	}
	if a := ke.lastAudit(); a.Action != ActionKubeCerts || a.Outcome == OutcomeOK || a.Target != "w-1" {
		t.Errorf("refusal audit %+v", a)
	}
}
