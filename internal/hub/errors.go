package hub

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/measure"
)

// outcomeError is an error that is the recorded result of an action (a
// refusal, a denial, a rule the request broke) rather than a failure of the
// hub: the action's audit entry is written with its outcome.
type outcomeError interface {
	error
	auditOutcome() string
}

// sentinel is a classifying error with the audit outcome it stands for and
// its errdefs class, which the gRPC edge translates to a code.
type sentinel struct {
	msg, outcome string
	class        error
}

func (e *sentinel) Error() string        { return e.msg }
func (e *sentinel) auditOutcome() string { return e.outcome }
func (e *sentinel) Unwrap() error        { return e.class }

// Audit outcomes.
const (
	OutcomeOK          = "ok"
	OutcomeRefused     = "refused"     // the enrollment gate said no; nothing changed but the session
	OutcomeQuarantined = "quarantined" // the node failed a check after proving its TPM
	OutcomeDenied      = "denied"      // the caller's role does not allow the action
	OutcomeFailed      = "failed"      // the request broke a rule (unknown node, wrong state, bad argument)
)

// Classes of failure, for errors.Is. Each is of an errdefs class, which the
// gRPC edge (errdefs.UnaryServerInterceptor) translates to a code (house
// rule 2): ErrNotFound → NotFound, ErrForbidden → PermissionDenied, ErrState
// → FailedPrecondition, ErrInvalid → InvalidArgument, every Refusal →
// PermissionDenied with its reason, ErrRateLimited → ResourceExhausted,
// ErrClosed → Unavailable.
var (
	ErrNotFound  error = &sentinel{"not found", OutcomeFailed, errdefs.ErrNotFound}
	ErrForbidden error = &sentinel{"forbidden", OutcomeDenied, errdefs.ErrPermission}
	ErrState     error = &sentinel{"not allowed in the node's state", OutcomeFailed, errdefs.ErrPrecondition}
	ErrInvalid   error = &sentinel{"invalid argument", OutcomeFailed, errdefs.ErrInvalid}
	// ErrRefused matches every *Refusal.
	ErrRefused error = &sentinel{"enrollment refused", OutcomeRefused, errdefs.ErrPermission}

	// The reasons a Refusal gives, each its own sentinel.
	ErrUnknownEK     error = &sentinel{"EK not admitted by the EK policy", OutcomeRefused, errdefs.ErrPermission}
	ErrClone         error = &sentinel{"identity belongs to another TPM or node", OutcomeRefused, errdefs.ErrPermission}
	ErrRetiredEK     error = &sentinel{"EK retired by a replace", OutcomeRefused, errdefs.ErrPermission}
	ErrQuarantined   error = &sentinel{"node is quarantined until replaced", OutcomeRefused, errdefs.ErrPermission}
	ErrNodeRevoked   error = &sentinel{"node is revoked until replaced", OutcomeRefused, errdefs.ErrPermission}
	ErrPolicy        error = &sentinel{"no policy for this node and role", OutcomeRefused, errdefs.ErrPermission}
	ErrNoSession     error = &sentinel{"no such enrollment session", OutcomeRefused, errdefs.ErrPermission}
	ErrSessionState  error = &sentinel{"enrollment session is not at this step", OutcomeRefused, errdefs.ErrPermission}
	ErrSessionExpire error = &sentinel{"enrollment session expired", OutcomeRefused, errdefs.ErrPermission}
	ErrActivation    error = &sentinel{"credential activation failed: AK not in the EK's TPM", OutcomeRefused, errdefs.ErrPermission}
	ErrNonceMismatch error = &sentinel{"wrong nonce", OutcomeRefused, errdefs.ErrPermission}
	ErrNonceReused   error = &sentinel{"nonce already used", OutcomeRefused, errdefs.ErrPermission}
	ErrNonceExpired  error = &sentinel{"nonce expired", OutcomeRefused, errdefs.ErrPermission}
	ErrEvidence      error = &sentinel{"evidence failed verification", OutcomeQuarantined, errdefs.ErrPermission}
	ErrCSR           error = &sentinel{"certificate request refused", OutcomeRefused, errdefs.ErrPermission}

	// ErrClosed: the store is closed (the hub is restarting); retry.
	ErrClosed = errdefs.New(errdefs.ErrUnavailable, "hub store closed")
	// ErrAuditChain: the audit log's hash chain does not verify.
	ErrAuditChain = errdefs.New(errdefs.ErrInternal, "audit chain broken")
	// ErrCorrupt: a stored record does not decode.
	ErrCorrupt = errdefs.New(errdefs.ErrInternal, "hub store corrupt")
	// ErrRateLimited: an unauthenticated peer called more often than the
	// hub allows; retry later.
	ErrRateLimited error = &sentinel{"too many unauthenticated calls from this peer", OutcomeRefused, errdefs.ErrExhausted}
)

// Check names the check an enrollment failed. The evidence checks carry the
// names internal/attest gives them.
const (
	CheckRequest        = "request"          // malformed claims (name, role, EK, AK)
	CheckPolicy         = "policy"           // no build for this name and role
	CheckEKPolicy       = "ek-policy"        // EK not registered, not vouched for, no window
	CheckClone          = "clone"            // name bound to another EK, or EK bound to another name
	CheckRetired        = "retired"          // EK of a replaced identity
	CheckQuarantined    = "quarantined"      // name quarantined until replaced
	CheckRevoked        = "revoked"          // name revoked or fenced until replaced
	CheckSession        = "session"          // unknown, expired or out-of-order session
	CheckAKBinding      = "ak-binding"       // AK not a TPM key, or not in the EK's TPM
	CheckNonce          = "nonce"            // wrong, reused or expired nonce
	CheckQuoteSignature = "quote-signature"  // quote not signed by the AK
	CheckEventLog       = "event-log-replay" // log does not replay to the quoted PCRs
	CheckSecureBoot     = "secure-boot"      // Secure Boot off in the log
	CheckPCRPolicy      = "pcr-policy"       // PCRs differ from the signed prediction
	CheckEvidence       = "evidence"         // a verifier refusal with no check name
	CheckBuild          = "build"            // node reports another build than its role must run
	CheckCSR            = "csr"              // CSR refused by the CA
)

// Reason is why a node was refused, quarantined, revoked, fenced or replaced:
// which check, and exactly what failed (which PCR, expected vs got).
type Reason struct {
	Check      string             `json:"check"`
	Detail     string             `json:"detail"`
	Mismatches []measure.Mismatch `json:"mismatches,omitempty"`
	At         time.Time          `json:"at"`
	// By is the actor of an operator action (revoke, fence, replace).
	By string `json:"by,omitempty"`
}

// Refusal is the error of an enrollment or renewal the hub said no to: no
// certificate. Quarantined tells whether the node was recorded as
// quarantined (it failed a check after proving it holds its TPM) or the
// request was only refused and audited. errors.Is matches ErrRefused and
// the sentinel of the reason.
type Refusal struct {
	Node        string
	Reason      Reason
	Quarantined bool
	class       error
}

func (r *Refusal) Error() string {
	what := "refused"
	if r.Quarantined {
		what = "quarantined"
	}
	return fmt.Sprintf("node %s %s: %s: %s", r.Node, what, r.Reason.Check, r.Reason.Detail)
}

// Unwrap lets errors.Is see ErrRefused and the reason's sentinel. Its
// errdefs class is ErrRefused's (permission), whatever the reason's.
func (r *Refusal) Unwrap() []error { return []error{ErrRefused, reasonClass{r.class}} }

// reasonClass matches its sentinel alone and hides the sentinel's errdefs
// class: a refusal for a malformed claim is still a refusal at the edge.
type reasonClass struct{ error }

func (c reasonClass) Is(target error) bool { return target == c.error }

func (r *Refusal) auditOutcome() string {
	if r.Quarantined {
		return OutcomeQuarantined
	}
	return OutcomeRefused
}

// refuse makes a Refusal that quarantines nothing.
func refuse(node, check string, class error, format string, args ...any) *Refusal {
	return &Refusal{Node: node, Reason: Reason{Check: check, Detail: fmt.Sprintf(format, args...)}, class: class}
}

// failf wraps a sentinel with context.
func failf(class error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", class, fmt.Sprintf(format, args...))
}

// outcomeOf is the audit outcome of an action that returned err.
func outcomeOf(err error) (string, bool) {
	if err == nil {
		return OutcomeOK, true
	}
	var oe outcomeError
	if errors.As(err, &oe) {
		return oe.auditOutcome(), true
	}
	return "", false
}

// CheckFailure is how a Verifier reports that the node failed one of its
// checks (internal/attest's *Refusal maps onto it field for field). The hub
// quarantines the node with it as the reason. Any other error from a
// Verifier is the hub's own problem (bad stored key, bad prediction) and
// blames no node.
type CheckFailure struct {
	Check      string
	Detail     string
	Mismatches []measure.Mismatch
}

func (f *CheckFailure) Error() string {
	return fmt.Sprintf("%s: %s", f.Check, strings.TrimSpace(f.Detail))
}
