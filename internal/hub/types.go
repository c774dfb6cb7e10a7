package hub

import (
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
)

// State is where a node is in its life: the admin API's type, so what the
// hub records is what its clients compare (api.NodeState has the meanings).
type State = api.NodeState

// The node states. Only enrolled nodes hold a valid certificate.
const (
	StatePending     = api.NodePending
	StateEnrolled    = api.NodeEnrolled
	StateQuarantined = api.NodeQuarantined
	StateRevoked     = api.NodeRevoked
	StateFenced      = api.NodeFenced
	StateReplaced    = api.NodeReplaced
)

// Node is the hub's record of one node name.
type Node struct {
	Name  string `json:"name"`
	Role  string `json:"role,omitempty"`
	State State  `json:"state"`
	// EKHash is the node's identity: lower-case hex sha256 of its EK's PKIX DER.
	EKHash string `json:"ekHash,omitempty"`
	// AKHash is the sha256 of AKPublic, the TPMT_PUBLIC of the attestation key
	// the node proved is in the EK's TPM; renewal quotes must verify under it.
	AKHash   string `json:"akHash,omitempty"`
	AKPublic []byte `json:"akPublic,omitempty"`
	// BuildID is the build the node proved it runs (or claimed, if quarantined).
	BuildID string `json:"buildID,omitempty"`
	// Target is the build an operator assigned the node (an upgrade); Proven
	// are the last builds it attested, newest last. The hub accepts the
	// spec's build, Target and Proven — so a node may come back on its
	// previous slot after a failed upgrade — and nothing else.
	Target string   `json:"target,omitempty"`
	Proven []string `json:"proven,omitempty"`
	// CertSerial and CertNotAfter describe the newest certificate issued.
	CertSerial   string    `json:"certSerial,omitempty"`
	CertNotAfter time.Time `json:"certNotAfter,omitzero"`
	// Certs are the unexpired certificates issued to this identity; revoking,
	// fencing, quarantining or replacing the node revokes them all.
	Certs      []Cert    `json:"certs,omitempty"`
	EnrolledAt time.Time `json:"enrolledAt,omitzero"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// Reason says why the node is quarantined, revoked, fenced or replaced.
	Reason *Reason `json:"reason,omitempty"`
	// History holds the identities this name had before, oldest first.
	History []Identity `json:"history,omitempty"`
	// PlaneKeys are the WireGuard public keys (base64) the node registered
	// for each plane; a replaced identity starts without any.
	PlaneKeys map[spec.Plane]string `json:"planeKeys,omitempty"`
}

// Cert is one issued certificate.
type Cert struct {
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
}

// Identity is a retired identity of a node name.
type Identity struct {
	EKHash     string    `json:"ekHash,omitempty"`
	AKHash     string    `json:"akHash,omitempty"`
	BuildID    string    `json:"buildID,omitempty"`
	CertSerial string    `json:"certSerial,omitempty"`
	State      State     `json:"state"` // the state it was in when replaced
	Reason     *Reason   `json:"reason,omitempty"`
	EnrolledAt time.Time `json:"enrolledAt,omitzero"`
	RetiredAt  time.Time `json:"retiredAt"`
	RetiredBy  string    `json:"retiredBy"`
}

// EKRecord is what the hub knows of one EK.
type EKRecord struct {
	Hash string `json:"hash"`
	// Name is the node the EK is bound to ("" for an EK registered without a
	// name, which binds to the first name it enrolls as).
	Name string `json:"name,omitempty"`
	// Registered: the deploy step (or the spec) recorded this EK.
	Registered bool `json:"registered,omitempty"`
	// Retired: the node was replaced; this EK may never enroll again.
	Retired bool      `json:"retired,omitempty"`
	At      time.Time `json:"at"`
	By      string    `json:"by"`
}

// Window is the enrollment window: while open, any EK is admitted.
type Window struct {
	Until time.Time `json:"until"`
	By    string    `json:"by,omitempty"`
	At    time.Time `json:"at,omitzero"`
}

// Open reports whether the window is open at now.
func (w Window) Open(now time.Time) bool { return now.Before(w.Until) }

// SessionKind is what a session ends in.
type SessionKind string

// Session kinds.
const (
	KindEnroll SessionKind = "enroll"
	KindRenew  SessionKind = "renew"
)

// Session is one enrollment (or renewal) attempt: the claims, the
// credential-activation secret's hash, and a single-use nonce.
type Session struct {
	ID   string      `json:"id"`
	Kind SessionKind `json:"kind"`
	Name string      `json:"name"`
	Role string      `json:"role"`
	// EKHash, AKHash, AKPublic: the identity being proved.
	EKHash   string `json:"ekHash"`
	AKHash   string `json:"akHash"`
	AKPublic []byte `json:"akPublic"`
	// Admission is how the EK policy admitted the EK: registered,
	// certificate, window, or enrolled (a renewal or re-enrollment).
	Admission string `json:"admission"`
	// SecretHash is sha256 of the credential activation secret; the secret
	// itself is never stored.
	SecretHash []byte `json:"secretHash,omitempty"`
	Activated  bool   `json:"activated"`
	// Nonce is issued on activation (at once for a renewal), valid until
	// NonceExpires and only once.
	Nonce        []byte    `json:"nonce,omitempty"`
	NonceExpires time.Time `json:"nonceExpires,omitzero"`
	NonceUsed    bool      `json:"nonceUsed"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	// Done is set when the session ended in a certificate, a refusal or a
	// quarantine; Outcome says which.
	Done    bool   `json:"done"`
	Outcome string `json:"outcome,omitempty"`
}

// Expired reports whether the session can no longer make progress at now.
func (s Session) Expired(now time.Time) bool { return !now.Before(s.Expires) }

// RevokedCert is one entry of the revocation set.
type RevokedCert struct {
	Serial   string    `json:"serial"`
	Node     string    `json:"node"`
	Client   string    `json:"client,omitempty"` // an operator certificate: its CN (role)
	NotAfter time.Time `json:"notAfter"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
}

// AuditEntry is one record of the append-only audit log. Hash is sha256
// over the previous entry's hash and this entry's fields (see entryHash), so
// changing or deleting an entry breaks every later hash.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	Prev    string    `json:"prev"`
	Hash    string    `json:"hash"`
}
