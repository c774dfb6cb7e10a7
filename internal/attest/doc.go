// Package attest is both sides of kubedos's attestation-gated enrollment
// (DESIGN.md §3): quote production on the node and verification on the hub,
// over transport-agnostic, JSON-serialisable wire structs.
//
// Protocol (the hub stores nothing here; sessions, nonces and records are
// the caller's):
//
//	node                                   hub
//	Prover.Identity()      ── Identity ──▶ NewChallenge(id)   ak-binding (AK is a TPM-made restricted signing key)
//	Prover.ActivateCredential ◀─ Challenge
//	                       ── secret ───▶ VerifyActivation     ak-binding (AK and EK share a TPM)
//	                                       CheckEK(id, policy)  ek-policy
//	                       ◀── nonce ──── NewNonce()           (single use and expiry: the hub's job)
//	Prover.Quote(nonce)    ── Evidence ─▶ VerifyEvidence       quote-signature, nonce, event-log-replay,
//	                                                           secure-boot, pcr-policy
//
// Node side: a Prover drives the TPM with google/go-attestation (EK and its
// NV certificate, AK creation, credential activation, quote) and reads PCRs
// with google/go-tpm. The AK is fresh per Prover and not persisted: a node
// that reboots before enrolling enrolls again with a new AK.
//
// Hub side: pure functions. go-attestation checks the AK's creation
// attestation and makes the activation challenge; the quote is checked step
// by step (go-tpm decodes the TPM structures) so that each failure has its
// own Check; internal/measure parses and replays the event log
// (go-attestation) and compares it with the signed manifest's prediction.
// The SecureBoot event's UEFI_VARIABLE_DATA is decoded here, by hand (a few
// lines; go-attestation's ParseSecurebootState needs its own verified event
// type, which measure.EventLog does not expose).
//
// Every way a node fails is a *Refusal with a stable Check name and the exact
// detail; errors.Is matches the check's sentinel and ErrRefused. Errors that
// are not refusals (ErrInput, ErrMalformed, ErrProver) are about the caller's
// inputs or the local TPM, not the node's trustworthiness.
package attest
