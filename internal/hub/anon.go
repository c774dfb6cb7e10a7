package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"

	"github.com/kubedos/kubedos/internal/pki"
)

// Audit actions of the summaries (see summaries): refused unauthenticated
// calls, and calls with a revoked certificate.
const (
	ActionAnonSummary    = "anonymous.refused"
	ActionRevokedSummary = "revoked.refused"
)

// Bounds of what an unauthenticated caller may send, checked before
// anything is stored or quoted: far above what a TPM or kubedosd sends, far
// below what would let a caller grow the hub's state.
const (
	maxKeyBytes      = 4 << 10  // EK public key, each AK parameter, quote, signature
	maxCertBytes     = 16 << 10 // EK certificate, CSR
	maxSecretBytes   = 256      // credential activation answer
	maxNonceBytes    = 128      // the hub's nonces are 32
	maxEventLogBytes = 4 << 20  // a measured boot's log is tens of KiB
	maxPCRs          = 24       // a TPM 2.0 bank
)

var (
	sessionIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	buildIDRE   = regexp.MustCompile(`^[A-Za-z0-9._:+-]{0,128}$`)
)

// Counts are refusals at the hub's edge, for metrics.
type Counts struct {
	// RateLimited: unauthenticated calls refused by the per-peer rate limit.
	RateLimited uint64
	// Anonymous: unauthenticated calls refused by the enrollment gate
	// before the caller proved a TPM (audited in summary).
	Anonymous uint64
	// Revoked: calls with a revoked certificate.
	Revoked uint64
}

type counters struct{ limited, anon, revoked atomic.Uint64 }

// Counts returns the refusal counters since the hub started.
func (h *Hub) Counts() Counts {
	return Counts{RateLimited: h.counts.limited.Load(), Anonymous: h.counts.anon.Load(), Revoked: h.counts.revoked.Load()}
}

// peerOf names the peer of a call: its remote, or "local" for a call from
// inside the hub's process.
func peerOf(ctx context.Context) string {
	if p, ok := remoteOf(ctx); ok {
		return p
	}
	return "local"
}

// admitAnon applies the rate limit to an unauthenticated call from a
// network peer. A refusal is counted and audited in summary.
func (h *Hub) admitAnon(ctx context.Context, action string) error {
	peer, remote := remoteOf(ctx)
	if !remote || h.limit.allow(peer, h.now()) {
		return nil
	}
	h.counts.limited.Add(1)
	err := failf(ErrRateLimited, "peer %s: more than %d calls at once or %g a second; retry later", peer, h.opt.AnonBurst, h.opt.AnonRate)
	e := AuditEntry{Actor: "peer:" + peer, Action: action, Target: peer, Outcome: OutcomeRefused, Detail: err.Error()}
	if rerr := h.summarize(h.anon, peer, "rate-limit", e); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// refusedAnon audits in summary a refusal of a caller that has not proved
// it holds a TPM, and returns it.
func (h *Hub) refusedAnon(ctx context.Context, action string, r *Refusal) error {
	h.counts.anon.Add(1)
	target := r.Node
	if pki.CheckName("node name", target) != nil {
		target = "?"
	}
	e := AuditEntry{Actor: nodeActor(target), Action: action, Target: target, Outcome: OutcomeRefused, Detail: r.Error()}
	if err := h.summarize(h.anon, peerOf(ctx), action+"/"+r.Reason.Check, e); err != nil {
		return errors.Join(r, err)
	}
	return r
}

// refusedRevoked audits in summary a call the hub refused because the
// caller's certificate (issued by the cluster CA) is revoked. The audit log
// failing does not change the refusal, so its error is dropped.
func (h *Hub) refusedRevoked(ctx context.Context, cert *x509.Certificate, method string) {
	h.counts.revoked.Add(1)
	peer := peerOf(ctx)
	serial := pki.SerialString(cert.SerialNumber)
	e := AuditEntry{Actor: "peer:" + peer, Action: "call.revoked", Target: quote(cert.Subject.CommonName), Outcome: OutcomeDenied,
		Detail: fmt.Sprintf("certificate %s of %s is revoked: %s refused", serial, quote(cert.Subject.CommonName), quote(method))}
	_ = h.summarize(h.revoked, peer, "revoked", e)
}

func (h *Hub) summarize(s *summaries, peer, what string, e AuditEntry) error {
	e.Time = h.now()
	e, write := s.note(peer, what, e, e.Time)
	if !write {
		return nil
	}
	return h.opt.Store.Record(e)
}

// flushSummaries writes the summaries that are due and forgets quiet peers.
func (h *Hub) flushSummaries() error {
	now := h.now()
	h.limit.prune(now)
	var errs []error
	for _, s := range []*summaries{h.anon, h.revoked} {
		for _, e := range s.flush(now) {
			errs = append(errs, h.opt.Store.Record(e))
		}
	}
	return errors.Join(errs...)
}

// checkBegin bounds what a Begin may carry.
func checkBegin(r BeginRequest) error {
	id := r.Identity
	return firstTooLong(
		field{"EK public key", len(id.EKPublic), maxKeyBytes},
		field{"EK certificate", len(id.EKCertificate), maxCertBytes},
		field{"AK public", len(id.AK.Public), maxKeyBytes},
		field{"AK creation data", len(id.AK.CreateData), maxKeyBytes},
		field{"AK creation attestation", len(id.AK.CreateAttestation), maxKeyBytes},
		field{"AK creation signature", len(id.AK.CreateSignature), maxKeyBytes})
}

// checkEnroll bounds what an Enroll (or Renew) may carry.
func checkEnroll(r EnrollRequest) error {
	if !buildIDRE.MatchString(r.BuildID) {
		return fmt.Errorf("build-id %s: want up to 128 letters, digits and ._:+-", quote(r.BuildID))
	}
	if len(r.Evidence.PCRs) > maxPCRs {
		return fmt.Errorf("%d PCRs, more than a TPM bank's %d", len(r.Evidence.PCRs), maxPCRs)
	}
	return firstTooLong(
		field{"nonce", len(r.Nonce), maxNonceBytes},
		field{"quote", len(r.Evidence.Quote), maxKeyBytes},
		field{"quote signature", len(r.Evidence.Signature), maxKeyBytes},
		field{"event log", len(r.Evidence.EventLog), maxEventLogBytes},
		field{"CSR", len(r.CSR), maxCertBytes})
}

// checkSessionID refuses a session id the hub cannot have issued, without
// quoting more of it than maxQuoted.
func checkSessionID(id string) *Refusal {
	if sessionIDRE.MatchString(id) {
		return nil
	}
	return refuse("?", CheckSession, ErrNoSession, "session id %s is not one this hub issues (32 lower-case hex digits)", quote(id))
}

type field struct {
	name    string
	n, most int
}

func firstTooLong(fs ...field) error {
	for _, f := range fs {
		if f.n > f.most {
			return fmt.Errorf("%s of %d bytes, more than %d", f.name, f.n, f.most)
		}
	}
	return nil
}
