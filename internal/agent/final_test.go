package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kubedos/kubedos/internal/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A hub that is down must be retried, whether its error arrives as a raw
// status or classed by the client interceptor (errdefs.FromGRPC); a refusal
// is final either way.
func TestFinal(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"raw unavailable", status.Error(codes.Unavailable, "connection refused"), false},
		{"classed unavailable", errdefs.FromGRPC(status.Error(codes.Unavailable, "connection refused")), false},
		{"wrapped classed unavailable", fmt.Errorf("begin: %w", errdefs.FromGRPC(status.Error(codes.Unavailable, "x"))), false},
		{"classed deadline", errdefs.FromGRPC(status.Error(codes.DeadlineExceeded, "slow")), false},
		{"context deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), false},
		{"classed refusal", errdefs.FromGRPC(status.Error(codes.PermissionDenied, "pcr 11 differs")), true},
		{"raw refusal", status.Error(codes.PermissionDenied, "pcr 11 differs"), true},
		{"local failure", errors.New("read cluster CA: no such file"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := final(tt.err); got != tt.want {
				t.Errorf("final(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
