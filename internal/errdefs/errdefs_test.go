package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	badCSR := New(ErrInvalid, "bad certificate request")
	tests := []struct {
		name  string
		err   error
		code  codes.Code
		class error
	}{
		{"sentinel", badCSR, codes.InvalidArgument, ErrInvalid},
		{"wrapped sentinel", fmt.Errorf("node w-1: %w", badCSR), codes.InvalidArgument, ErrInvalid},
		{"not found", New(ErrNotFound, "no such node"), codes.NotFound, ErrNotFound},
		{"permission", New(ErrPermission, "reader may not revoke"), codes.PermissionDenied, ErrPermission},
		{"precondition", New(ErrPrecondition, "node is revoked"), codes.FailedPrecondition, ErrPrecondition},
		{"exhausted", New(ErrExhausted, "rate limited"), codes.ResourceExhausted, ErrExhausted},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded, context.DeadlineExceeded},
		{"unclassified", errors.New("disk on fire"), codes.Internal, ErrInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := ToGRPC(tt.err)
			if got := status.Code(wire); got != tt.code {
				t.Fatalf("code = %v, want %v", got, tt.code)
			}
			back := FromGRPC(wire)
			if !errors.Is(back, tt.class) {
				t.Fatalf("FromGRPC(%v) is not %v", wire, tt.class)
			}
			if back.Error() != tt.err.Error() {
				t.Fatalf("message = %q, want %q", back.Error(), tt.err.Error())
			}
			if status.Code(back) != tt.code {
				t.Fatalf("client-side code = %v, want %v", status.Code(back), tt.code)
			}
		})
	}
}

func TestStatusPassesThrough(t *testing.T) {
	s := status.Error(codes.Unauthenticated, "no peer")
	if got := ToGRPC(s); got != s {
		t.Fatalf("ToGRPC changed a status: %v", got)
	}
	if !errors.Is(FromGRPC(s), ErrUnauthenticated) {
		t.Fatal("Unauthenticated status is not ErrUnauthenticated")
	}
	plain := errors.New("dial tcp: refused")
	if FromGRPC(plain) != plain {
		t.Fatal("a non-status error must pass through FromGRPC")
	}
}
