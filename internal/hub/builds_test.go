package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// signedBuild is a build manifest whose worker image is "img-<tag>" with
// the fake prediction of role "worker-<tag>".
func signedBuild(t *testing.T, key ed25519.PrivateKey, tag string) ([]byte, []byte) {
	t.Helper()
	pcrs, _ := json.Marshal(prediction("worker-" + tag))
	raw, _ := json.Marshal(manifest.Manifest{APIVersion: "kubedos.io/v1alpha1", Kind: "BuildManifest", Cluster: "t", BuildID: "build-" + tag,
		Roles: map[string]manifest.RoleManifest{"worker": {RoleID: "img-" + tag, PCRs: pcrs}}})
	sig, err := sign.SignBlob(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, sig
}

// TestAssignedBuilds: a node is accepted on a build an admin assigned it
// (and back on its previous one), never on a build assigned to another node.
func TestAssignedBuilds(t *testing.T) {
	defer func(f func(manifest.RoleManifest) (measure.Prediction, error)) { predictionOf = f }(predictionOf)
	predictionOf = func(rm manifest.RoleManifest) (measure.Prediction, error) {
		var p measure.Prediction
		return p, json.Unmarshal(rm.PCRs, &p)
	}
	e := newEnv(t)
	_, e.artifact, _ = ed25519.GenerateKey(rand.Reader)
	e.newHub()
	ctx := context.Background()
	w1, w2 := newNode(t, "w-1", "worker"), newNode(t, "w-2", "worker")
	e.register(w1)
	e.register(w2)
	first, second := e.mustEnroll(w1), e.mustEnroll(w2)
	raw, sig := signedBuild(t, e.artifact, "b")

	if _, err := e.hub.AssignBuild(ctx, operator, "w-1", raw, sig); !errors.Is(err, ErrForbidden) {
		t.Errorf("operator assigned a build: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	badRaw, badSig := signedBuild(t, other, "b")
	if _, err := e.hub.AssignBuild(ctx, admin, "w-1", badRaw, badSig); !errors.Is(err, ErrInvalid) {
		t.Errorf("build signed by another key assigned: %v", err)
	}
	n, err := e.hub.AssignBuild(ctx, admin, "w-1", raw, sig)
	if err != nil || n.Target != "img-b" {
		t.Fatalf("assign: %+v %v", n, err)
	}
	if a := e.lastAudit(); a.Action != string(pki.ActionUpgrade) || a.Outcome != OutcomeOK || a.Target != "w-1" {
		t.Errorf("audit %+v", a)
	}

	peer, err := e.ca.Authenticate(first.Cert, t0, e.hub.Revocations())
	if err != nil {
		t.Fatal(err)
	}
	renew := func(p pki.Peer, nd *node, build, pcrsOf string) error {
		nonce, err := e.hub.BeginRenewal(ctx, p)
		if err != nil {
			return err
		}
		_, err = e.hub.Renew(ctx, p, EnrollRequest{Session: nonce.Session, Nonce: nonce.Value,
			Evidence: nd.tpm.quote(nonce.Value, goodPCRs(pcrsOf), "log-ok"), BuildID: build, CSR: nd.csrDER(t)})
		return err
	}
	e.clock.Advance(time.Minute)
	if err := renew(peer, w1, "img-b", "worker-b"); err != nil {
		t.Fatalf("re-attest on the assigned build: %v", err)
	}
	st, _ := e.store.Node("w-1")
	if st.BuildID != "img-b" || st.Target != "" || len(st.Proven) != 2 || st.Proven[0] != "build-worker" {
		t.Errorf("after the upgrade: build %s target %q proven %v", st.BuildID, st.Target, st.Proven)
	}
	// Back on the spec's build (a rollback) is accepted too.
	if err := renew(peer, w1, "build-worker", "worker"); err != nil {
		t.Errorf("re-attest on the previous build: %v", err)
	}
	// w-2 was never assigned img-b: it is refused, measured against its own build.
	peer2, err := e.ca.Authenticate(second.Cert, t0, e.hub.Revocations())
	if err == nil {
		err = renew(peer2, w2, "img-b", "worker-b")
	}
	var r *Refusal
	if !errors.As(err, &r) || r.Reason.Check != CheckPCRPolicy {
		t.Errorf("w-2 on a build assigned to w-1: %v", err)
	}
}
