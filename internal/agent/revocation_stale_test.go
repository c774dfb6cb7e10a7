package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStaleRevocationsFailClosed (issue 14, item 6): once the revocation
// list is older than its bound, the node API refuses admin and operator
// calls (a revoked operator could otherwise act while the hub is cut off)
// while readers still read, and health turns critical; a fresh list
// restores both.
func TestStaleRevocationsFailClosed(t *testing.T) {
	clock := newFakeClock()
	clock.now = time.Now() // the certificates are issued on the real clock
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.Now = clock.Now })
	ctx := context.Background()
	if err := e.revs.Update(nil, clock.Now()); err != nil {
		t.Fatal(err)
	}
	op := e.as("olga", pki.RoleOperator)
	admin := e.as("ada", pki.RoleAdmin)
	reader := e.as("rita", pki.RoleReader)
	doc := `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":"w-1"}`
	revocations := func(h *api.Health) api.HealthCheck {
		for _, c := range h.Checks {
			if c.Name == "revocations" {
				return c
			}
		}
		t.Fatalf("no revocations check in %+v", h.Checks)
		return api.HealthCheck{}
	}

	clock.Advance(DefaultRevocationMaxAge - time.Second)
	if _, err := op.ConfigApply(ctx, doc, true); err != nil {
		t.Fatalf("operator within the bound: %v", err)
	}
	if h, err := reader.Health(ctx); err != nil || !h.Healthy || !revocations(h).OK || !revocations(h).Critical {
		t.Fatalf("health within the bound: %+v, %v", h, err)
	}

	clock.Advance(2 * time.Second)
	if _, err := op.ConfigApply(ctx, doc, true); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "revocation list") {
		t.Errorf("operator past the bound: %v, want FailedPrecondition naming the revocation list", err)
	}
	if _, err := admin.Reboot(ctx); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("admin past the bound: %v, want FailedPrecondition", err)
	}
	if _, err := op.RestartService(ctx, "chrony"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("restart past the bound: %v, want FailedPrecondition", err)
	}
	if _, err := reader.Version(ctx); err != nil {
		t.Errorf("reader past the bound: %v", err)
	}
	h, err := reader.Health(ctx)
	if err != nil || h.Healthy || revocations(h).OK || !revocations(h).Critical {
		t.Errorf("health past the bound: %+v, %v; want a failed critical revocations check", h, err)
	}
	if got := e.sys.restarts(); len(got) != 0 {
		t.Errorf("restarted %v past the bound", got)
	}

	if err := e.revs.Update(nil, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := op.ConfigApply(ctx, doc, true); err != nil {
		t.Errorf("operator after a fresh list: %v", err)
	}
	if h, err := reader.Health(ctx); err != nil || !h.Healthy {
		t.Errorf("health after a fresh list: %+v, %v", h, err)
	}
}

// TestNeverFetchedRevocationsFailClosed: a node that never had a list
// refuses changes too.
func TestNeverFetchedRevocationsFailClosed(t *testing.T) {
	e := newNodeEnv(t, func(c *NodeAPIConfig) {
		c.Revocations, _ = LoadRevocationList("")
	})
	if _, err := e.as("olga", pki.RoleOperator).RestartService(context.Background(), "chrony"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("restart with no list: %v, want FailedPrecondition", err)
	}
}

// TestRevocationMaxAgeFromHub: the bound is the spec's, told by the hub
// with the list and kept with it across a restart; a value outside the
// spec's bounds is not taken (the default stands) and the serials still
// are.
func TestRevocationMaxAgeFromHub(t *testing.T) {
	clock := newFakeClock()
	clock.now = time.Now()
	file := filepath.Join(t.TempDir(), RevokedFile)
	e := newNodeEnv(t, func(c *NodeAPIConfig) {
		c.Now = clock.Now
		c.Revocations, _ = LoadRevocationList(file)
	})
	revs := e.api.cfg.Revocations
	ctx := context.Background()
	if err := revs.UpdateFrom(&api.RevokedResponse{MaxAgeSeconds: 120}, clock.Now()); err != nil {
		t.Fatal(err)
	}
	op := e.as("olga", pki.RoleOperator)
	clock.Advance(2*time.Minute + time.Second)
	if _, err := op.RestartService(ctx, "chrony"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "at most 2m0s") {
		t.Errorf("operator past the spec's 2m: %v, want FailedPrecondition naming 2m0s", err)
	}
	// Kept on the state partition with the list.
	again, err := LoadRevocationList(file)
	if err != nil || again.MaxAge(DefaultRevocationMaxAge) != 2*time.Minute {
		t.Errorf("reloaded: max age %s, %v; want 2m0s", again.MaxAge(DefaultRevocationMaxAge), err)
	}
	// Out of bounds: ignored, the serial taken.
	for _, secs := range []int64{1, 59, 86401, -5} {
		if err := revs.UpdateFrom(&api.RevokedResponse{Serials: []string{"7"}, MaxAgeSeconds: secs}, clock.Now()); err != nil {
			t.Fatal(err)
		}
		if got := revs.MaxAge(DefaultRevocationMaxAge); got != DefaultRevocationMaxAge {
			t.Errorf("hub said %ds: max age %s, want the default", secs, got)
		}
	}
	if revs.Set().Len() != 1 {
		t.Errorf("serials: %d, want 1", revs.Set().Len())
	}
}
