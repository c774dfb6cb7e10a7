package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// ActionKubeCerts is the audit action of a Kubernetes certificate issuance.
const ActionKubeCerts = string(pki.ActionKubeCerts)

// DefaultKubeFreshness is how soon after the hub issued a node its
// certificate (after a fresh quote) the node may use it to get Kubernetes
// certificates.
const DefaultKubeFreshness = 2 * time.Minute

// KubeIssuer holds the Kubernetes CAs for the hub and remembers which
// fresh node certificates have already been spent on an issuance.
type KubeIssuer struct {
	cas *pki.KubeCAs
	// fresh: see DefaultKubeFreshness.
	fresh time.Duration

	mu    sync.Mutex
	spent map[string]time.Time // node certificate serial → when it was spent
}

// NewKubeIssuer makes the hub's issuer over cas; fresh 0 means
// DefaultKubeFreshness.
func NewKubeIssuer(cas *pki.KubeCAs, fresh time.Duration) (*KubeIssuer, error) {
	if cas == nil {
		return nil, errors.New("hub: Kubernetes CAs are required")
	}
	if fresh == 0 {
		fresh = DefaultKubeFreshness
	}
	if fresh < 0 || fresh > 10*time.Minute {
		return nil, fmt.Errorf("hub: Kubernetes freshness %v outside (0, 10m]", fresh)
	}
	return &KubeIssuer{cas: cas, fresh: fresh, spent: map[string]time.Time{}}, nil
}

// spend marks serial used at now, false if it already was. Entries older
// than the freshness window are dropped: a certificate that old is refused
// as stale anyway.
func (k *KubeIssuer) spend(serial string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for s, at := range k.spent {
		if now.Sub(at) > 2*k.fresh {
			delete(k.spent, s)
		}
	}
	if _, ok := k.spent[serial]; ok {
		return false
	}
	k.spent[serial] = now
	return true
}

// KubeCertsIssued is what a node gets: its certificates and the CAs.
type KubeCertsIssued struct {
	Certs                            map[pki.KubeCert]*x509.Certificate
	KubernetesCA, EtcdCA, FrontProxy *x509.Certificate
	// SAKeyPEM and SAPubPEM: the service-account key pair, for
	// control-plane nodes only.
	SAKeyPEM, SAPubPEM []byte
}

// IssueKubeCerts certifies the keys in csrs (certificate name → PKCS #10
// DER) for the node peer speaks for. issuedAt is when the hub issued the
// certificate peer presented (its NotBefore plus pki.Backdate). The rules,
// each refusal audited:
//   - the caller is a node (operators, admins and readers are denied);
//   - the node is enrolled (not quarantined, revoked, fenced or replaced)
//     and presents its newest certificate;
//   - that certificate came from a fresh quote (enrollment or renewal) at
//     most the freshness window ago, and was not spent on an earlier
//     issuance: one fresh quote, one issuance;
//   - its spec role holds every certificate asked for (pki.KubeCertsFor);
//   - every CSR is well formed; its names are ignored, the spec's are set.
//
// The issuance is audited with every serial. Nothing is issued unless
// everything asked for is.
func (h *Hub) IssueKubeCerts(ctx context.Context, peer pki.Peer, issuedAt time.Time, csrs map[string][]byte) (*KubeCertsIssued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.authorize(peer, pki.ActionKubeCerts, peer.Name); err != nil {
		return nil, err
	}
	now := h.now()
	fail := func(err error) (*KubeCertsIssued, error) {
		return nil, errors.Join(err, h.record(peer.Actor(), ActionKubeCerts, peer.Name, err))
	}
	k, s := h.opt.Kube, h.opt.Spec
	if k == nil || s == nil || !s.Workloads.Kubernetes.Enabled {
		return fail(failf(ErrState, "this hub issues no Kubernetes certificates (no Kubernetes CAs, or Kubernetes not enabled in the spec)"))
	}
	if len(csrs) == 0 || len(csrs) > api.MaxKubeCSRs {
		return fail(failf(ErrInvalid, "%d certificate requests: want 1 to %d", len(csrs), api.MaxKubeCSRs))
	}
	n, err := h.opt.Store.Node(peer.Name)
	if err != nil {
		return fail(err)
	}
	if n.State != StateEnrolled {
		return fail(failf(ErrState, "node %s is %s: no Kubernetes certificates", n.Name, n.State))
	}
	if n.CertSerial != peer.Serial {
		return fail(failf(ErrState, "node %s presented certificate %s, not its newest (%s): renew with a fresh quote first", n.Name, peer.Serial, n.CertSerial))
	}
	sn, ok := s.NodeByName(n.Name)
	if !ok || string(sn.Role) != n.Role || n.Role != peer.NodeRole {
		return fail(failf(ErrForbidden, "node %s (role %s) is not a node of that role in the spec", n.Name, n.Role))
	}
	if age := now.Sub(issuedAt); age > k.fresh || age < -pki.Backdate {
		return fail(failf(ErrState, "node %s: certificate issued %s ago; Kubernetes certificates need one from a fresh quote at most %s old: renew first",
			n.Name, age.Round(time.Second), k.fresh))
	}
	kinds := make([]string, 0, len(csrs))
	for name := range csrs {
		kinds = append(kinds, name)
	}
	sort.Strings(kinds)
	held := pki.KubeCertsFor(s, sn.Role)
	for _, name := range kinds {
		if !slices.Contains(held, pki.KubeCert(name)) {
			return fail(failf(ErrForbidden, "node %s (role %s) may not hold a %q certificate (its role holds %v)", n.Name, sn.Role, clip(name), held))
		}
	}
	life, err := s.Workloads.Kubernetes.Lifetimes()
	if err != nil {
		return fail(failf(ErrInvalid, "spec: %v", err))
	}
	if !k.spend(peer.Serial, now) {
		return fail(failf(ErrState, "node %s: certificate %s was already used for Kubernetes certificates: renew with a fresh quote", n.Name, peer.Serial))
	}
	out := &KubeCertsIssued{Certs: map[pki.KubeCert]*x509.Certificate{}, KubernetesCA: k.cas.Kubernetes.Certificate(),
		EtcdCA: k.cas.Etcd.Certificate(), FrontProxy: k.cas.FrontProxy.Certificate()}
	var detail []string
	for _, name := range kinds {
		cert, err := k.cas.Sign(pki.KubeIssue{Spec: s, Node: sn, Kind: pki.KubeCert(name), CSR: csrs[name], Life: life, Now: now})
		if err != nil {
			class := ErrInvalid
			if errors.Is(err, pki.ErrKubeRole) {
				class = ErrForbidden
			}
			return fail(failf(class, "%s: %v", name, err))
		}
		out.Certs[pki.KubeCert(name)] = cert
		detail = append(detail, fmt.Sprintf("%s %s until %s", name, pki.SerialString(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if sn.Role == spec.RoleControlPlane {
		out.SAKeyPEM, out.SAPubPEM = k.cas.SAKeyPEM, k.cas.SAPubPEM
		detail = append(detail, "service-account key pair delivered")
	}
	err = h.opt.Store.Record(AuditEntry{Time: now, Actor: peer.Actor(), Action: ActionKubeCerts, Target: n.Name, Outcome: OutcomeOK,
		Detail: fmt.Sprintf("after the fresh quote of certificate %s: %s", peer.Serial, strings.Join(detail, "; "))})
	if err != nil {
		return nil, err // nothing leaves the hub unaudited
	}
	for name := range out.Certs {
		h.met.issue(string(name), 1)
	}
	return out, nil
}

// KubeHolding is what a node holds of Kubernetes: the certificates its
// spec role may ask IssueKubeCerts for (pki.KubeCertsFor), and its plan
// (kubeplan.For: the components it runs, their flags, files and units).
type KubeHolding struct {
	Certs []pki.KubeCert
	// Plan is nil for a node that runs no Kubernetes component.
	Plan *kubeplan.Plan
	// KubernetesCA is the Kubernetes CA's certificate, with a plan: a
	// load balancer, which holds no certificate, checks the API servers'
	// against it.
	KubernetesCA *x509.Certificate
}

// KubeCertsHeld is what the node peer speaks for holds of Kubernetes:
// nothing if this hub issues no Kubernetes certificates (no CAs, or
// Kubernetes off in the spec: a fact, not a refusal, so nodes asking
// again grow no audit log). Only enrolled nodes of their spec role may
// ask, as for IssueKubeCerts; a refusal is audited, an answer is a read
// and is not.
func (h *Hub) KubeCertsHeld(ctx context.Context, peer pki.Peer) (KubeHolding, error) {
	if err := ctx.Err(); err != nil {
		return KubeHolding{}, err
	}
	if err := h.authorize(peer, pki.ActionKubeCerts, peer.Name); err != nil {
		return KubeHolding{}, err
	}
	fail := func(err error) (KubeHolding, error) {
		return KubeHolding{}, errors.Join(err, h.record(peer.Actor(), ActionKubeCerts, peer.Name, err))
	}
	s := h.opt.Spec
	if h.opt.Kube == nil || s == nil || !s.Workloads.Kubernetes.Enabled {
		return KubeHolding{}, nil
	}
	n, err := h.opt.Store.Node(peer.Name)
	if err != nil {
		return fail(err)
	}
	if n.State != StateEnrolled {
		return fail(failf(ErrState, "node %s is %s: no Kubernetes certificates", n.Name, n.State))
	}
	sn, ok := s.NodeByName(n.Name)
	if !ok || string(sn.Role) != n.Role || n.Role != peer.NodeRole {
		return fail(failf(ErrForbidden, "node %s (role %s) is not a node of that role in the spec", n.Name, n.Role))
	}
	// The spec is the hub's: an error here is the hub's configuration, not
	// the node's doing, and is not audited as a refusal of it.
	plan, err := kubeplan.For(spec.WithDefaults(s), sn.Name)
	if err != nil {
		return KubeHolding{}, failf(ErrState, "Kubernetes plan of node %s: %v", sn.Name, err)
	}
	held := KubeHolding{Certs: pki.KubeCertsFor(s, sn.Role), Plan: plan}
	if plan != nil {
		held.KubernetesCA = h.opt.Kube.cas.Kubernetes.Certificate()
	}
	return held, nil
}
