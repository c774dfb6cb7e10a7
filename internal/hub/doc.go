// Package hub is the hub's state and logic: the attestation-gated
// enrollment gate, the node registry, revocation, operator actions and the
// audit log. It has no network code; the API layer calls Hub's methods with
// the caller's verified identity (a pki.Peer from pki.CA.Authenticate).
//
// # Enrollment
//
//	node                                 hub
//	BeginEnrollment(name, role, EK, AK)  name/role known to the Policy, EK and AK well formed,
//	                                     identity rules, EK policy  → session + challenge
//	CompleteActivation(session, secret)  the TPM holding the EK released the secret: the AK
//	                                     is beside the EK            → single-use nonce
//	Enroll(session, nonce, evidence,     nonce spent (wrong, reused, expired: refused),
//	       build-id, CSR)                evidence vs the prediction of the build the role must
//	                                     run, reported build-id, CSR → certificate
//
// Before activation, a failure only refuses (audited): the requester has not
// shown it holds the TPM, so it must not be able to quarantine the name it
// claims. After it, an evidence failure or a wrong build quarantines the
// node with the reason (which check, what was expected, what was got).
// Renewal (BeginRenewal, Renew) is the same quote check under the AK the
// node enrolled with, for an enrolled node presenting its certificate.
//
// # Rules
//
// A node's identity is its EK: a name bound to one EK (registered or
// enrolled) refuses every other (a clone, audited), and one EK cannot be two
// names. A quarantined, revoked or fenced name refuses everyone until
// Replace, which retires the EK for good, revokes the node's certificates
// and keeps the old identity in the node's History. Revoke and Fence put
// every unexpired certificate of the node in the revocation set in the same
// transaction. The EK policy admits an EK that is registered (by the deploy
// step, or from the spec), or vouched for by its EK certificate, or (when
// the policy uses windows) any EK while an operator's enrollment window is
// open.
//
// # State
//
// One bbolt file (Store); the bucket layout is in store.go. Every change is
// one transaction together with its audit entry, so a crash leaves either
// both or neither, and an enrollment either completed (node enrolled,
// certificate serial, audit entry) or left at most a session that expires.
// The audit log is append-only and hash-chained (VerifyAuditChain).
package hub
