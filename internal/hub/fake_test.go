package hub

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki/pkitest"

	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// This file holds unit-test fakes for the separately tested attestation
// verifier (internal/attest) and for the TPM. They model the protocol's
// facts, not its cryptography: only the TPM that owns an EK can open a
// challenge made for it, a quote is "signed" by hashing it with the AK.

// fakeTPM is a node's TPM: an EK and an AK.
type fakeTPM struct {
	ekDER []byte
	ak    []byte
}

func newTPM(t testing.TB) *fakeTPM {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	ak := make([]byte, 16)
	rand.Read(ak)
	return &fakeTPM{ekDER: der, ak: append([]byte("ak:"), ak...)}
}

func (tpm *fakeTPM) ekHash() string { return hashHex(tpm.ekDER) }

func (tpm *fakeTPM) identity() TPMIdentity {
	return TPMIdentity{EKPublic: tpm.ekDER, AK: AKParameters{Public: tpm.ak, CreateData: []byte("cd")}}
}

// activate opens a challenge, which only the TPM holding the EK can.
func (tpm *fakeTPM) activate(ch Challenge) []byte {
	if !bytes.Equal(ch.Secret, []byte(tpm.ekHash())) {
		return []byte("cannot decrypt")
	}
	return ch.Credential
}

// quote "signs" the nonce and PCRs with the AK.
func (tpm *fakeTPM) quote(nonce []byte, pcrs map[int]measure.Digest, log string) Evidence {
	return Evidence{Quote: nonce, Signature: quoteSig(tpm.ak, nonce), PCRs: pcrs, EventLog: []byte(log)}
}

func quoteSig(ak, quote []byte) []byte {
	s := sha256.Sum256(append(append([]byte{}, ak...), quote...))
	return s[:]
}

// fakeVerifier stands in for internal/attest.
type fakeVerifier struct {
	// ekCA: an EK certificate equal to these bytes chains to the configured CA.
	ekCA []byte
}

func (v fakeVerifier) CheckEKCertificate(id TPMIdentity) error {
	if v.ekCA != nil && bytes.Equal(id.EKCertificate, v.ekCA) {
		return nil
	}
	return &CheckFailure{Check: CheckEKPolicy, Detail: "EK certificate does not chain to a configured CA"}
}

func (fakeVerifier) NewChallenge(id TPMIdentity) (Challenge, []byte, error) {
	if !bytes.HasPrefix(id.AK.Public, []byte("ak:")) {
		return Challenge{}, nil, &CheckFailure{Check: CheckAKBinding, Detail: "AK is not a restricted signing key"}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	return Challenge{Credential: secret, Secret: []byte(hashHex(id.EKPublic))}, secret, nil
}

func (fakeVerifier) VerifyEvidence(ev Evidence, akPublic, nonce []byte, pred measure.Prediction) error {
	switch {
	case string(ev.EventLog) == "hub-error":
		return errors.New("prediction does not decode")
	case !bytes.Equal(ev.Signature, quoteSig(akPublic, ev.Quote)):
		return &CheckFailure{Check: CheckQuoteSignature, Detail: "quote is not signed by the enrolled AK"}
	case !bytes.Equal(ev.Quote, nonce):
		return &CheckFailure{Check: CheckNonce, Detail: fmt.Sprintf("quote over %x, not the issued nonce %x", ev.Quote, nonce)}
	case string(ev.EventLog) != "log-ok":
		return &CheckFailure{Check: CheckEventLog, Detail: "event log does not replay to the quoted PCR 4"}
	case bytes.Equal(ev.PCRs[7], digest("sb-off")):
		return &CheckFailure{Check: CheckSecureBoot, Detail: "SecureBoot variable is 00"}
	}
	var ms []measure.Mismatch
	for _, p := range pred.PCRs {
		if got := ev.PCRs[p.Index]; !bytes.Equal(got, p.Value) {
			ms = append(ms, measure.Mismatch{PCR: p.Index, Index: -1, Want: p.Value.String(), Got: fmt.Sprintf("quoted %x", got)})
		}
	}
	if len(ms) > 0 {
		err := &measure.MismatchError{Mismatches: ms}
		return &CheckFailure{Check: CheckPCRPolicy, Detail: err.Error(), Mismatches: ms}
	}
	return nil
}

func digest(s string) measure.Digest {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// fakePolicy: the spec's nodes (name → role); every role runs build-<role>.
type fakePolicy map[string]string

func (p fakePolicy) Expected(name, role string) (string, measure.Prediction, error) {
	if r, ok := p[name]; !ok || r != role {
		return "", measure.Prediction{}, fmt.Errorf("the spec has no node %s with role %s", name, role)
	}
	return "build-" + role, prediction(role), nil
}

func prediction(role string) measure.Prediction {
	p := measure.Prediction{Bank: "sha256"}
	for _, i := range []int{4, 7, 11} {
		p.PCRs = append(p.PCRs, measure.PCRPrediction{Index: i, Value: digest(fmt.Sprintf("%s/%d", role, i))})
	}
	return p
}

// goodPCRs are the PCRs of a node that booted its role's build.
func goodPCRs(role string) map[int]measure.Digest {
	m := map[int]measure.Digest{}
	for _, p := range prediction(role).PCRs {
		m[p.Index] = p.Value
	}
	return m
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newCA(t testing.TB) *pki.CA {
	t.Helper()
	return pkitest.NewCAWith(t, "kubedos test CA", t0.Add(-time.Hour), t0.AddDate(10, 0, 0))
}

// env is a hub over a store in a temporary directory.
type env struct {
	t      testing.TB
	path   string
	store  *Store
	ca     *pki.CA
	clock  *clock
	policy fakePolicy
	ver    fakeVerifier
	allowW bool
	hub    *Hub
	// artifact signs build manifests the hub is assigned.
	artifact ed25519.PrivateKey
	// spec lays out the planes (nil: the hub has none).
	spec *spec.ClusterSpec
	// etcdSnaps are the etcd snapshots the hub keeps (nil: none).
	etcdSnaps EtcdSnapshots
	// takeSnap takes one now (nil: this hub takes none).
	takeSnap func(context.Context) (etcdsnap.Snapshot, error)
}

var (
	admin    = pki.Peer{Name: "alice", Role: pki.RoleAdmin}
	operator = pki.Peer{Name: "olga", Role: pki.RoleOperator}
	reader   = pki.Peer{Name: "rita", Role: pki.RoleReader}
)

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "hub.db"), ca: newCA(t), clock: &clock{t: t0},
		policy: fakePolicy{"master": "master", "w-1": "worker", "w-2": "worker"}}
	st, err := Open(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	e.newHub()
	t.Cleanup(func() { e.store.Close() })
	return e
}

func (e *env) newHub() {
	e.t.Helper()
	var pub ed25519.PublicKey
	if e.artifact != nil {
		pub = e.artifact.Public().(ed25519.PublicKey)
	}
	h, err := New(Options{Store: e.store, CA: e.ca, Verifier: e.ver, Policy: e.policy, AllowWindow: e.allowW,
		CertLifetime: 6 * time.Hour, Now: e.clock.Now, ArtifactKey: pub, Spec: e.spec, EtcdSnapshots: e.etcdSnaps, TakeEtcdSnapshot: e.takeSnap})
	if err != nil {
		e.t.Fatal(err)
	}
	e.hub = h
}

// restart closes and reopens the store, as a hub restart does.
func (e *env) restart() {
	e.t.Helper()
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	st, err := Open(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = st
	e.newHub()
}

// node is a node under test: its claims and what it will send.
type node struct {
	name, role string
	tpm        *fakeTPM
	buildID    string
	pcrs       map[int]measure.Digest
	log        string
	key        ed25519.PrivateKey
	csr        *x509.CertificateRequest
}

func newNode(t testing.TB, name, role string) *node {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &node{name: name, role: role, tpm: newTPM(t), buildID: "build-" + role, pcrs: goodPCRs(role), log: "log-ok",
		key: key, csr: &x509.CertificateRequest{}}
}

func (n *node) csrDER(t testing.TB) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, n.csr, n.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// steps lets a test tamper with one step of the protocol.
type steps struct {
	// activate returns the secret the node answers with.
	activate func(n *node, ch Challenge) []byte
	// beforeEnroll runs between the nonce and the quote.
	beforeEnroll func()
	// request edits the enrollment request.
	request func(r *EnrollRequest)
	// enrollVia, if set, is the hub the quote goes to (one restarted since).
	enrollVia func() *Hub
}

// enroll runs the whole protocol for n against h.
func enroll(ctx context.Context, t testing.TB, h *Hub, n *node, s steps) (*Enrolled, error) {
	t.Helper()
	begun, err := h.BeginEnrollment(ctx, BeginRequest{Name: n.name, Role: n.role, Identity: n.tpm.identity()})
	if err != nil {
		return nil, err
	}
	answer := n.tpm.activate(begun.Challenge)
	if s.activate != nil {
		answer = s.activate(n, begun.Challenge)
	}
	nonce, err := h.CompleteActivation(ctx, begun.Session, answer)
	if err != nil {
		return nil, err
	}
	if s.beforeEnroll != nil {
		s.beforeEnroll()
	}
	req := EnrollRequest{Session: begun.Session, Nonce: nonce.Value, Evidence: n.tpm.quote(nonce.Value, n.pcrs, n.log),
		BuildID: n.buildID, CSR: n.csrDER(t)}
	if s.request != nil {
		s.request(&req)
	}
	if s.enrollVia != nil {
		h = s.enrollVia()
	}
	return h.Enroll(ctx, req)
}

func (e *env) mustEnroll(n *node) *Enrolled {
	e.t.Helper()
	got, err := enroll(context.Background(), e.t, e.hub, n, steps{})
	if err != nil {
		e.t.Fatalf("enroll %s: %v", n.name, err)
	}
	return got
}

func (e *env) register(n *node) {
	e.t.Helper()
	if err := e.hub.RegisterEK(context.Background(), operator, n.name, n.tpm.ekHash()); err != nil {
		e.t.Fatalf("register %s: %v", n.name, err)
	}
}

// lastAudit returns the newest audit entry.
func (e *env) lastAudit() AuditEntry {
	e.t.Helper()
	head, err := e.store.VerifyAuditChain()
	if err != nil {
		e.t.Fatal(err)
	}
	got, err := e.store.Audit(head.Seq, 1)
	if err != nil || len(got) != 1 {
		e.t.Fatalf("audit %d: %v %v", head.Seq, got, err)
	}
	return got[0]
}
