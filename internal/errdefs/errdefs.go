// Package errdefs holds the error classes every package classifies its
// sentinels with, and the one translation between those classes and gRPC
// status codes (house rule 2: classify once, translate at one edge).
//
// A package declares its own sentinels with New, naming the class:
//
//	var ErrBadCSR = errdefs.New(errdefs.ErrInvalid, "bad certificate request")
//
// so errors.Is(err, pki.ErrBadCSR) and errors.Is(err, errdefs.ErrInvalid)
// both hold. Servers install UnaryServerInterceptor/StreamServerInterceptor
// (ToGRPC); clients install UnaryClientInterceptor/StreamClientInterceptor
// (FromGRPC; api.DialOptions does), so a caller compares classes, never
// codes or message text.
package errdefs

import (
	"context"
	"errors"
)

// The classes. Each maps to exactly one gRPC code (see codes.go).
var (
	// ErrInvalid: the request or input is malformed or breaks a rule.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the named thing does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: creating what exists (and is never overwritten).
	ErrAlreadyExists = errors.New("already exists")
	// ErrPermission: the caller's identity or the policy says no. An
	// attestation refusal is one.
	ErrPermission = errors.New("permission denied")
	// ErrUnauthenticated: the caller proved no identity.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPrecondition: the thing is not in a state that allows the action.
	ErrPrecondition = errors.New("failed precondition")
	// ErrExhausted: a rate limit or a size bound was hit; retry later.
	ErrExhausted = errors.New("resource exhausted")
	// ErrUnavailable: the service is (re)starting or unreachable; retry.
	ErrUnavailable = errors.New("unavailable")
	// ErrInternal: a failure of ours, not of the request.
	ErrInternal = errors.New("internal error")
)

var classes = []error{ErrInvalid, ErrNotFound, ErrAlreadyExists, ErrPermission,
	ErrUnauthenticated, ErrPrecondition, ErrExhausted, ErrUnavailable, ErrInternal}

// classed is a package sentinel: its own message, one class.
type classed struct {
	msg   string
	class error
}

func (e *classed) Error() string { return e.msg }
func (e *classed) Unwrap() error { return e.class }

// New returns a sentinel with its own message that errors.Is matches to class.
func New(class error, msg string) error { return &classed{msg: msg, class: class} }

// Class returns err's class: one of the Err* values above, context.Canceled
// or context.DeadlineExceeded, or ErrInternal when err is unclassified.
func Class(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, c) {
			return c
		}
	}
	for _, c := range classes {
		if errors.Is(err, c) {
			return c
		}
	}
	return ErrInternal
}
