package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
)

// Item 5, downgrades forever: a node upgraded off a build could come back
// to it (the hub accepts the last proven builds) with no way to stop it.
// An admin now retires the build: renewal, enrollment and upgrade onto it
// are refused with the reason, and the node running it says so.
func TestRetiredBuildRefused(t *testing.T) {
	defer func(f func(manifest.RoleManifest) (measure.Prediction, error)) { predictionOf = f }(predictionOf)
	predictionOf = func(rm manifest.RoleManifest) (measure.Prediction, error) {
		var p measure.Prediction
		return p, json.Unmarshal(rm.PCRs, &p)
	}
	e := newEnv(t)
	_, e.artifact, _ = ed25519.GenerateKey(rand.Reader)
	e.newHub()
	ctx := context.Background()
	w1 := newNode(t, "w-1", "worker")
	e.register(w1)
	first := e.mustEnroll(w1)
	peer, err := e.ca.Authenticate(first.Cert, t0, e.hub.Revocations())
	if err != nil {
		t.Fatal(err)
	}
	renew := func(build, pcrsOf string) error {
		nonce, err := e.hub.BeginRenewal(ctx, peer)
		if err != nil {
			return err
		}
		_, err = e.hub.Renew(ctx, peer, EnrollRequest{Session: nonce.Session, Nonce: nonce.Value,
			Evidence: w1.tpm.quote(nonce.Value, goodPCRs(pcrsOf), "log-ok"), BuildID: build, CSR: w1.csrDER(t)})
		return err
	}
	raw, sig := signedBuild(t, e.artifact, "b")
	if _, err := e.hub.AssignBuild(ctx, admin, "w-1", raw, sig); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if err := renew("img-b", "worker-b"); err != nil {
		t.Fatalf("upgrade to img-b: %v", err)
	}

	if _, err := e.hub.RetireBuild(ctx, operator, "build-worker", "CVE-2026-0001"); !errors.Is(err, ErrForbidden) {
		t.Errorf("an operator retired a build: %v", err)
	}
	if _, err := e.hub.RetireBuild(ctx, admin, "build-worker", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("retired without a reason: %v", err)
	}
	rb, err := e.hub.RetireBuild(ctx, admin, "build-worker", "CVE-2026-0001")
	if err != nil || rb.By != admin.Actor() {
		t.Fatalf("retire: %+v %v", rb, err)
	}
	if a := e.lastAudit(); a.Action != string(pki.ActionRetireBuild) || a.Target != "build-worker" || a.Detail != "CVE-2026-0001" {
		t.Errorf("audit %+v", a)
	}
	// The rollback onto the retired build: refused, with the reason.
	wantRefused := func(what string, err error) {
		t.Helper()
		var r *Refusal
		if !errors.Is(err, ErrBuildRetired) || !errors.As(err, &r) || r.Reason.Check != CheckBuildRetired || r.Quarantined ||
			!strings.Contains(err.Error(), "CVE-2026-0001") {
			t.Errorf("%s: %v, want a build-retired refusal with the reason", what, err)
		}
	}
	e.clock.Advance(time.Minute)
	wantRefused("renewal on the retired build", renew("build-worker", "worker"))
	if n, _ := e.store.Node("w-1"); n.State != StateEnrolled || n.BuildID != "img-b" {
		t.Errorf("a retired build refusal changed the node: %+v", n)
	}
	if err := renew("img-b", "worker-b"); err != nil {
		t.Errorf("renewal on the current build: %v", err)
	}
	// A fresh node on the retired spec build cannot enroll.
	w2 := newNode(t, "w-2", "worker")
	e.register(w2)
	_, err = enroll(ctx, t, e.hub, w2, steps{})
	wantRefused("enrollment on the retired build", err)
	// Retiring by the manifest's build-id covers its images; upgrade refused.
	if _, err := e.hub.RetireBuild(ctx, admin, "build-c", "bad kernel"); err != nil {
		t.Fatal(err)
	}
	raw, sig = signedBuild(t, e.artifact, "c")
	if _, err := e.hub.AssignBuild(ctx, admin, "w-1", raw, sig); !errors.Is(err, ErrBuildRetired) || !strings.Contains(err.Error(), "bad kernel") {
		t.Errorf("upgrade to a retired build: %v", err)
	}
	// Nodes running a retired build show it.
	if _, err := e.hub.RetireBuild(ctx, admin, "build-b", "superseded"); err != nil {
		t.Fatal(err)
	}
	n, _ := e.store.Node("w-1")
	if r, err := e.hub.Retirement(n); err != nil || r == nil || r.ID != "build-b" {
		t.Errorf("retirement of w-1 (img-b of build-b): %+v %v", r, err)
	}
	// Retiring twice keeps the first reason.
	if again, err := e.hub.RetireBuild(ctx, admin, "build-b", "other"); err != nil || again.Reason != "superseded" {
		t.Errorf("retired again: %+v %v", again, err)
	}
}
