package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// TPMIdentity is what a node presents to begin enrollment: its TPM's
// endorsement key and a fresh attestation key (internal/attest's Identity,
// field for field).
type TPMIdentity struct {
	// EKPublic is the EK public key, PKIX DER (canonical).
	EKPublic []byte
	// EKCertificate is the EK certificate (DER) when the TPM has one.
	EKCertificate []byte
	AK            AKParameters
}

// AKParameters are the TPM's creation facts of the AK (go-attestation's
// AttestationParameters; internal/attest's AKParameters).
type AKParameters struct {
	Public, CreateData, CreateAttestation, CreateSignature []byte
}

// Challenge is a credential activation challenge (internal/attest's
// Challenge, convertible with a type conversion).
type Challenge struct {
	Credential []byte
	Secret     []byte
}

// Evidence is a node's answer to a nonce (internal/attest's Evidence,
// convertible with a type conversion).
type Evidence struct {
	Quote     []byte
	Signature []byte
	PCRs      map[int]measure.Digest
	EventLog  []byte
}

// Verifier is the attestation verifier the hub needs (internal/attest, via
// an adapter). A method reports that the node failed a check with a
// *CheckFailure; any other error is the hub's own problem.
type Verifier interface {
	// CheckEKCertificate returns nil if the identity's EK certificate is
	// for its EK and chains to a configured EK CA.
	CheckEKCertificate(id TPMIdentity) error
	// NewChallenge checks the AK is a TPM-made restricted signing key and
	// makes a credential activation challenge encrypted to the EK; it
	// returns the challenge and the secret the node must give back.
	NewChallenge(id TPMIdentity) (Challenge, []byte, error)
	// VerifyEvidence checks the quote's signature by akPublic over nonce,
	// the event log's replay, Secure Boot, and the PCRs against pred.
	VerifyEvidence(ev Evidence, akPublic, nonce []byte, pred measure.Prediction) error
}

// Policy says what a node must run: the build-id its role must run, and that
// build's signed PCR prediction. It refuses a name and role the cluster
// spec does not have.
type Policy interface {
	Expected(name, role string) (buildID string, pred measure.Prediction, err error)
}

// Defaults of Options.
const (
	DefaultCertLifetime = 24 * time.Hour
	DefaultSessionTTL   = 10 * time.Minute
	DefaultNonceTTL     = 2 * time.Minute
	DefaultMaxWindow    = 24 * time.Hour
)

// Options configure a Hub.
type Options struct {
	Store    *Store
	CA       *pki.CA
	Verifier Verifier
	Policy   Policy
	// AllowWindow lets operators open enrollment windows that admit any EK
	// (the spec's trust.ekPolicy.mode "window"). Registered EKs and EKs
	// whose certificate the Verifier vouches for are admitted regardless.
	AllowWindow bool
	// ArtifactKey checks the signature of builds assigned to nodes
	// (AssignBuild); without it upgrades cannot be assigned.
	ArtifactKey ed25519.PublicKey
	// CertLifetime of node certificates (spec trust.certificateLifetime).
	CertLifetime time.Duration
	// RevocationMaxAge is told to nodes with the revocation list (spec
	// trust.revocationMaxAge; default its default).
	RevocationMaxAge time.Duration
	// SessionTTL bounds a whole enrollment; NonceTTL a nonce.
	SessionTTL, NonceTTL time.Duration
	// MaxWindow bounds OpenWindow.
	MaxWindow time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Spec lays out the WireGuard planes; without it nodes cannot join
	// them (JoinPlanes fails) and everything else works.
	Spec *spec.ClusterSpec
	// AnonRate (calls per second) and AnonBurst bound the unauthenticated
	// calls (enrollment) of one network peer (see WithRemote); defaults
	// DefaultAnonRate and DefaultAnonBurst.
	AnonRate  float64
	AnonBurst int
	// Kube issues Kubernetes certificates (kubecerts.go); nil: none.
	Kube *KubeIssuer
	// EtcdSnapshots are the etcd snapshots this hub keeps (on the master
	// of a cluster that runs etcd); nil: none.
	EtcdSnapshots EtcdSnapshots
	// TakeEtcdSnapshot takes an etcd snapshot now and keeps it with
	// EtcdSnapshots' (hubhost's, on the master); nil: this hub takes none.
	TakeEtcdSnapshot func(ctx context.Context) (etcdsnap.Snapshot, error)
}

// Hub is the enrollment gate, node registry and operator actions over a
// Store. Methods are safe for concurrent use. Every action is audited in the
// same transaction as its change; refused or denied requests that change
// nothing get an audit entry of their own. Successful reads are not audited.
type Hub struct {
	opt Options
	// limit is the unauthenticated calls' rate limit; anon and revoked
	// summarize refused unauthenticated calls and calls with revoked
	// certificates in the audit log; counts are their metrics.
	limit         *limiter
	anon, revoked *summaries
	counts        counters
	met           metrics
}

// System is the actor of the hub's own actions (seeding registered EKs from
// the spec at start).
var System = pki.Peer{Name: "kubedos-hub", Role: pki.RoleAdmin}

// New makes a Hub.
func New(opt Options) (*Hub, error) {
	if opt.Store == nil || opt.CA == nil || opt.Verifier == nil || opt.Policy == nil {
		return nil, fmt.Errorf("hub: store, CA, verifier and policy are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opt.CertLifetime, DefaultCertLifetime)
	def(&opt.RevocationMaxAge, spec.Trust{}.RevocationMaxAgeDuration())
	def(&opt.SessionTTL, DefaultSessionTTL)
	def(&opt.NonceTTL, DefaultNonceTTL)
	def(&opt.MaxWindow, DefaultMaxWindow)
	for _, d := range []time.Duration{opt.CertLifetime, opt.SessionTTL, opt.NonceTTL, opt.MaxWindow} {
		if d < 0 {
			return nil, fmt.Errorf("hub: negative duration %v in options", d)
		}
	}
	if opt.NonceTTL > opt.SessionTTL {
		return nil, fmt.Errorf("hub: nonce TTL %v longer than the session TTL %v", opt.NonceTTL, opt.SessionTTL)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AnonRate == 0 {
		opt.AnonRate = DefaultAnonRate
	}
	if opt.AnonBurst == 0 {
		opt.AnonBurst = DefaultAnonBurst
	}
	if opt.AnonRate < 0 || opt.AnonBurst < 0 {
		return nil, fmt.Errorf("hub: negative rate limit %v/s, burst %d", opt.AnonRate, opt.AnonBurst)
	}
	return &Hub{opt: opt, limit: newLimiter(opt.AnonRate, opt.AnonBurst),
		anon: newSummaries(ActionAnonSummary), revoked: newSummaries(ActionRevokedSummary)}, nil
}

// Store is the hub's state.
func (h *Hub) Store() *Store { return h.opt.Store }

// Revocations is the live revocation set for the TLS edge of the hub API
// (pki.CA.Authenticate); node APIs need the same list.
func (h *Hub) Revocations() *pki.Revocations { return h.opt.Store.Revocations() }

func (h *Hub) now() time.Time { return h.opt.Now().UTC() }

// EKHash names a TPM as the EK policy does: lower-case hex sha256 of the
// EK public key's PKIX DER, which must be canonical (so one key has one
// name) and RSA or ECDSA.
func EKHash(pkixDER []byte) (string, error) {
	pub, err := x509.ParsePKIXPublicKey(pkixDER)
	if err != nil {
		return "", fmt.Errorf("EK public key: %w", err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return "", fmt.Errorf("EK public key: %T is neither RSA nor ECDSA", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || string(der) != string(pkixDER) {
		return "", fmt.Errorf("EK public key: not canonical PKIX DER")
	}
	return hashHex(pkixDER), nil
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("randomness: %w", err)
	}
	return b, nil
}

// authorize checks peer's role allows action; a denial is audited.
func (h *Hub) authorize(peer pki.Peer, action pki.Action, target string) error {
	if pki.Allows(peer.Role, action) {
		return nil
	}
	err := failf(ErrForbidden, "%s may not %s", peer.Actor(), action)
	if rerr := h.record(peer.Actor(), string(action), target, err); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// record audits an action that changed nothing and returns err's outcome.
func (h *Hub) record(actor, action, target string, err error) error {
	out, ok := outcomeOf(err)
	if !ok {
		out = OutcomeFailed
	}
	return h.opt.Store.Record(AuditEntry{Time: h.now(), Actor: actor, Action: action, Target: target, Outcome: out, Detail: err.Error()})
}

// refused audits a refusal that changed nothing and returns it.
func (h *Hub) refused(action string, r *Refusal) error {
	target := r.Node
	if pki.CheckName("node name", target) != nil {
		target = "?"
	}
	if err := h.record(nodeActor(target), action, target, r); err != nil {
		return errors.Join(r, err)
	}
	return r
}

// reasonOf turns a Verifier's report into a quarantine reason.
func reasonOf(f *CheckFailure) Reason {
	r := Reason{Check: f.Check, Detail: f.Detail, Mismatches: f.Mismatches}
	if r.Check == "" {
		r.Check = CheckEvidence
	}
	return r
}
