package attest

import (
	"errors"
	"fmt"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/measure"
)

// Check names one enrollment check. The names are stable and machine-readable:
// they are recorded in quarantine records and shown to operators.
type Check string

// The checks, in the order the hub runs them.
const (
	// CheckAKBinding: the AK is a TPM-generated restricted signing key and
	// lives in the same TPM as the EK (credential activation).
	CheckAKBinding Check = "ak-binding"
	// CheckEKPolicy: the EK is registered, or has a certificate chaining to a
	// configured CA, or the enrollment window is open.
	CheckEKPolicy Check = "ek-policy"
	// CheckQuoteSignature: the quote is a TPM-generated TPMS_ATTEST signed by
	// the enrolled AK, and covers exactly the PCR values sent with it.
	CheckQuoteSignature Check = "quote-signature"
	// CheckNonce: the quote's qualifying data is the nonce the hub issued.
	CheckNonce Check = "nonce"
	// CheckEventLogReplay: the TCG event log parses and replays to the quoted
	// PCR values.
	CheckEventLogReplay Check = "event-log-replay"
	// CheckSecureBoot: the firmware measured SecureBoot = 1 into PCR 7.
	CheckSecureBoot Check = "secure-boot"
	// CheckPCRPolicy: the quote covers the policy's PCRs and the log's events
	// and PCR values equal the signed manifest's prediction.
	CheckPCRPolicy Check = "pcr-policy"
)

// Checks lists every check in the order the hub runs them (activation and EK
// policy at enrollment, then the evidence checks in VerifyEvidence's order).
var Checks = []Check{CheckAKBinding, CheckEKPolicy, CheckQuoteSignature, CheckNonce,
	CheckEventLogReplay, CheckSecureBoot, CheckPCRPolicy}

// Sentinels: errors.Is(err, ErrNonce) is true for a nonce refusal, and
// errors.Is(err, ErrRefused) (and errdefs.ErrPermission) for any refusal.
var (
	ErrRefused        = errdefs.New(errdefs.ErrPermission, "attestation refused")
	ErrAKBinding      = errors.New("AK is not bound to the EK")
	ErrEKPolicy       = errors.New("EK is not allowed by the EK policy")
	ErrQuoteSignature = errors.New("quote is not signed by the AK over the PCR values sent")
	ErrNonce          = errors.New("quote is not over the issued nonce")
	ErrEventLogReplay = errors.New("event log does not replay to the quoted PCRs")
	ErrSecureBoot     = errors.New("secure boot is not enabled")
	ErrPCRPolicy      = errors.New("PCRs differ from the signed prediction")
)

// Err returns the sentinel error of the check, nil for an unknown check.
func (c Check) Err() error {
	switch c {
	case CheckAKBinding:
		return ErrAKBinding
	case CheckEKPolicy:
		return ErrEKPolicy
	case CheckQuoteSignature:
		return ErrQuoteSignature
	case CheckNonce:
		return ErrNonce
	case CheckEventLogReplay:
		return ErrEventLogReplay
	case CheckSecureBoot:
		return ErrSecureBoot
	case CheckPCRPolicy:
		return ErrPCRPolicy
	}
	return nil
}

// Refusal is a node failing one check: the node is not enrolled and is
// recorded as quarantined with this reason. It is JSON-serialisable for that
// record. Errors from this package that are not a *Refusal are the hub's own
// problems (bad policy input, no randomness) and say nothing about the node.
type Refusal struct {
	Check Check `json:"check"`
	// Detail says exactly what failed: which PCR, event or field, expected
	// and got values.
	Detail string `json:"detail"`
	// Mismatches are the differences from the prediction (pcr-policy only).
	Mismatches []measure.Mismatch `json:"mismatches,omitempty"`

	cause error
}

func refuse(c Check, cause error, format string, args ...any) *Refusal {
	return &Refusal{Check: c, Detail: fmt.Sprintf(format, args...), cause: cause}
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrRefused, r.Check, r.Detail)
}

// Is matches ErrRefused, its class (errdefs.ErrPermission) and the sentinel
// of the refusal's check.
func (r *Refusal) Is(target error) bool {
	return target == ErrRefused || target == errdefs.ErrPermission || target == r.Check.Err()
}

// Unwrap returns the underlying error, if any (for pcr-policy a
// *measure.MismatchError, for event-log-replay a measure.ErrEventLog error).
func (r *Refusal) Unwrap() error { return r.cause }

// AsRefusal returns the *Refusal in err's chain, if any.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
