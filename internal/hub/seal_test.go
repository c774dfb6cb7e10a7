package hub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sealEnv is a hub of cluster "t" with an artifact key and a few audit
// entries, and a record anchored on its chain's head.
func sealEnv(t *testing.T) (*env, *manifest.Acceptance) {
	t.Helper()
	e := newEnv(t)
	_, e.artifact, _ = ed25519.GenerateKey(rand.Reader)
	e.spec = &spec.ClusterSpec{Metadata: spec.Metadata{Name: "t"}}
	e.newHub()
	e.register(newNode(t, "w-1", "worker"))
	head, err := e.store.VerifyAuditChain()
	if err != nil {
		t.Fatal(err)
	}
	rec := &manifest.Acceptance{APIVersion: "kubedos.io/v1alpha1", Kind: manifest.AcceptanceKind, Cluster: "t", Time: t0,
		BuildID: "b1", ManifestSHA256: strings.Repeat("ab", 32),
		Checks:    []manifest.AcceptanceCheck{{Name: "attested", Node: "w-1", Outcome: "passed"}, {Name: "dns", Outcome: "not checked"}},
		Allowed:   []string{"dns"},
		Nodes:     []manifest.AcceptanceNode{{Name: "w-1", Role: "worker", EKHash: "ek", BuildID: "img"}},
		CAs:       map[string]string{"cluster": strings.Repeat("cd", 32)},
		AuditHead: manifest.AuditHead{Seq: head.Seq, Hash: head.Hash}}
	return e, rec
}

func signRecord(t *testing.T, key ed25519.PrivateKey, rec *manifest.Acceptance) ([]byte, []byte) {
	t.Helper()
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sign.SignBlob(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, sig
}

// TestSealRefusals: only an admin seals, and only a record the artifact key
// signed, of this cluster, anchored on this hub's chain, within bounds.
// Every refusal is audited and appends no seal.
func TestSealRefusals(t *testing.T) {
	e, rec := sealEnv(t)
	ctx := context.Background()
	raw, sig := signRecord(t, e.artifact, rec)
	node := pki.Peer{Name: "w-1", Role: pki.RoleNode}
	for _, p := range []pki.Peer{operator, reader, node} {
		if _, err := e.hub.Seal(ctx, p, raw, sig); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s sealed: %v", p.Actor(), err)
		}
		if a := e.lastAudit(); a.Action != string(pki.ActionSeal) || a.Outcome != OutcomeDenied || a.Actor != p.Actor() {
			t.Errorf("%s's refusal audited as %+v", p.Actor(), a)
		}
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherRaw, otherSig := signRecord(t, other, rec)
	tampered := bytes.Replace(raw, []byte(`"b1"`), []byte(`"b2"`), 1)
	wrongCluster := *rec
	wrongCluster.Cluster = "elsewhere"
	wcRaw, wcSig := signRecord(t, e.artifact, &wrongCluster)
	wrongAnchor := *rec
	wrongAnchor.AuditHead.Hash = strings.Repeat("0f", 32)
	waRaw, waSig := signRecord(t, e.artifact, &wrongAnchor)
	future := *rec
	future.AuditHead.Seq += 100
	fRaw, fSig := signRecord(t, e.artifact, &future)
	big := *rec
	big.Checks = append(big.Checks, manifest.AcceptanceCheck{Name: "x", Detail: strings.Repeat("x", manifest.MaxAcceptanceBytes)})
	bRaw, bSig := signRecord(t, e.artifact, &big)
	notRecord, nrSig := signRecord(t, e.artifact, &manifest.Acceptance{Kind: "BuildManifest"})
	for _, tt := range []struct {
		name     string
		raw, sig []byte
		want     string
	}{
		{"signed by another key", otherRaw, otherSig, "signature"},
		{"tampered after signing", tampered, sig, "signature"},
		{"no signature", raw, nil, "signature"},
		{"another cluster", wcRaw, wcSig, `cluster "elsewhere"`},
		{"anchored on another chain", waRaw, waSig, "with hash"},
		{"anchored past the head", fRaw, fSig, "does not have"},
		{"over the bound", bRaw, bSig, "more than"},
		{"not a record", notRecord, nrSig, "not an acceptance record"},
	} {
		before := e.lastAudit().Seq
		_, err := e.hub.Seal(ctx, admin, tt.raw, tt.sig)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", tt.name, err, tt.want)
		}
		a := e.lastAudit()
		if a.Seq != before+1 || a.Action != string(pki.ActionSeal) || a.Outcome != OutcomeFailed {
			t.Errorf("%s: audited as %+v", tt.name, a)
		}
		if len(a.Detail) > 2*maxAuditField {
			t.Errorf("%s: audit detail of %d bytes", tt.name, len(a.Detail))
		}
	}
	e.artifact = nil
	e.newHub()
	if _, err := e.hub.Seal(ctx, admin, raw, sig); !errors.Is(err, ErrState) {
		t.Errorf("a hub without an artifact key sealed: %v", err)
	}
}

// TestSeal: an admin's signed record is appended as cluster.seal, with its
// digest, after its anchor; the chain still verifies.
func TestSeal(t *testing.T) {
	e, rec := sealEnv(t)
	raw, sig := signRecord(t, e.artifact, rec)
	got, err := e.hub.Seal(context.Background(), admin, raw, sig)
	if err != nil {
		t.Fatal(err)
	}
	a := e.lastAudit()
	if got.Entry.Seq != a.Seq || got.Entry.Hash != a.Hash || a.Seq <= rec.AuditHead.Seq {
		t.Errorf("sealed as %+v, last entry %+v, anchor %d", got.Entry, a, rec.AuditHead.Seq)
	}
	if a.Action != "cluster.seal" || a.Target != "t" || a.Outcome != OutcomeOK || a.Actor != admin.Actor() ||
		!strings.Contains(a.Detail, "sha256:"+got.RecordSHA256) || !strings.Contains(a.Detail, "1 of 2 checks passed") ||
		!strings.Contains(a.Detail, "without [dns]") || !strings.Contains(a.Detail, sign.KeyID(e.artifact.Public().(ed25519.PublicKey))) {
		t.Errorf("seal entry %+v", a)
	}
	if _, err := e.store.VerifyAuditChain(); err != nil {
		t.Error(err)
	}
}

// TestSealOverGRPC: the admin RPC seals for an admin, refuses an operator
// and a bad signature with their codes, and Audit answers the chain head.
func TestSealOverGRPC(t *testing.T) {
	e, rec := sealEnv(t)
	addr := serveTLS(t, e)
	ctx := context.Background()
	adm := adminClient(t, e, addr, clientCert(t, e, "alice", pki.RoleAdmin))
	head, err := adm.AuditHead(ctx)
	if err != nil || !head.ChainOK || head.Head == nil || len(head.Entries) != 0 {
		t.Fatalf("audit head: %+v %v", head, err)
	}
	rec.AuditHead = manifest.AuditHead{Seq: head.Head.Seq, Hash: head.Head.Hash}
	raw, sig := signRecord(t, e.artifact, rec)
	op := adminClient(t, e, addr, clientCert(t, e, "olga", pki.RoleOperator))
	if _, err := op.Seal(ctx, raw, sig); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator sealing: %v, want PermissionDenied", err)
	}
	if _, err := adm.Seal(ctx, raw, []byte("kubedos-signature v1\n")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad signature: %v, want InvalidArgument", err)
	}
	got, err := adm.Seal(ctx, raw, sig)
	if err != nil {
		t.Fatal(err)
	}
	after, err := adm.AuditHead(ctx)
	if err != nil || after.Head == nil || after.Head.Seq != got.Seq || after.Head.Hash != got.Hash {
		t.Errorf("sealed %+v; head now %+v %v", got, after, err)
	}
}
