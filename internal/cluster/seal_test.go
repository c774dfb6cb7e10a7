package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/steps/stepstest"
)

// sealBuild writes a build directory for a's spec with a manifest naming
// each role's image "id-<role>", signed by ks; it returns the directory
// and the manifest's sha256.
func sealBuild(t *testing.T, a *acceptEnv, ks *sign.KeySet) (string, string) {
	t.Helper()
	m := manifest.Manifest{APIVersion: "kubedos.io/v1alpha1", Kind: "BuildManifest", Cluster: a.spec.Metadata.Name, BuildID: "b1",
		Roles: map[string]manifest.RoleManifest{}}
	for _, n := range a.spec.Topology.Nodes {
		m.Roles[string(n.Role)] = manifest.RoleManifest{RoleID: "id-" + string(n.Role)}
	}
	raw, _ := json.Marshal(m)
	key, err := ks.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := sign.SignBlob(key, raw)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, manifest.ManifestFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, manifest.SignatureFile), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return dir, hex.EncodeToString(sum[:])
}

func noRecord(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{manifest.AcceptanceFile, manifest.AcceptanceSigFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want nothing written", f, err)
		}
	}
}

// TestSealRefusedWhenNotAccepted: a failing gate, or one with the drill
// not checked and not allowed, seals nothing: no file, no call to the hub.
func TestSealRefusedWhenNotAccepted(t *testing.T) {
	ks := testKeys(t)
	a := newAcceptEnv(t)
	a.e.Hub.ArtifactKey = ks.SigningPub
	dir, _ := sealBuild(t, a, ks)
	a.kube.nodes["w-1"] = false
	a.cfg.AllowUnchecked = []string{UncheckedDrill}
	res, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks})
	if !errors.Is(err, ErrNotAccepted) || res == nil || res.Accept == nil || res.Record != nil {
		t.Fatalf("sealed a failing cluster: %+v %v", res, err)
	}
	a.kube.nodes["w-1"] = true
	a.cfg.AllowUnchecked = nil
	if _, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks}); !errors.Is(err, ErrNotAccepted) {
		t.Fatalf("sealed with the drill unchecked and not allowed: %v", err)
	}
	if a.e.Hub.SealCalls != 0 {
		t.Errorf("%d seal calls reached the hub", a.e.Hub.SealCalls)
	}
	noRecord(t, dir)

	// A manifest the artifact key did not sign: refused before the gate.
	other := testKeys(t)
	calls := a.e.Hub.Calls
	if _, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: other}); !errors.Is(err, sign.ErrUntrusted) && !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("manifest signed by another key: %v", err)
	}
	if a.e.Hub.Calls != calls || a.e.Hub.SealCalls != 0 {
		t.Error("the gate ran for a build whose manifest did not verify")
	}
	noRecord(t, dir)
}

// TestSeal: an accepted cluster's record is signed, sealed at the hub and
// written beside the manifest; a second seal needs --force.
func TestSeal(t *testing.T) {
	ks := testKeys(t)
	a := newAcceptEnv(t)
	a.e.Hub.ArtifactKey = ks.SigningPub
	dir, manifestSum := sealBuild(t, a, ks)
	a.cfg.Builds = nil // Seal takes them from the build
	a.cfg.AllowUnchecked = []string{UncheckedDrill}
	res, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks})
	if err != nil {
		t.Fatal(err)
	}
	raw, rerr := os.ReadFile(filepath.Join(dir, manifest.AcceptanceFile))
	sig, serr := os.ReadFile(filepath.Join(dir, manifest.AcceptanceSigFile))
	if rerr != nil || serr != nil {
		t.Fatal(rerr, serr)
	}
	if err := sign.VerifyBlob(ks.SigningPub, raw, sig); err != nil {
		t.Errorf("the written record does not verify: %v", err)
	}
	if len(a.e.Hub.Sealed) != 1 || string(a.e.Hub.Sealed[0]) != string(raw) {
		t.Errorf("the hub sealed %d records, not the one written", len(a.e.Hub.Sealed))
	}
	rec, err := manifest.ParseAcceptance(raw)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ks.CA.Raw)
	if rec.Cluster != "local-k8s" || rec.BuildID != "b1" || rec.ManifestSHA256 != manifestSum || rec.CAs["cluster"] != hex.EncodeToString(sum[:]) ||
		rec.AuditHead != (manifest.AuditHead{Seq: stepstest.AuditHeadSeq, Hash: stepstest.AuditHeadHash}) ||
		!slices.Equal(rec.Allowed, []string{"drill"}) || len(rec.Nodes) != 4 || rec.Nodes[1].EKHash != "ek-cp-1" || rec.Nodes[1].BuildID != "id-controlplane" {
		t.Errorf("record %+v", rec)
	}
	if i := slices.IndexFunc(rec.Checks, func(c manifest.AcceptanceCheck) bool { return c.Name == "attested" && c.Node == "w-1" }); i < 0 ||
		rec.Checks[i].Outcome != CheckPassed {
		t.Errorf("checks %+v", rec.Checks)
	}
	if res.Sealed == nil || res.Sealed.Seq != stepstest.AuditHeadSeq+1 || res.RecordPath == "" {
		t.Errorf("result %+v", res)
	}
	if _, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second seal without --force: %v", err)
	}
	if _, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks, Force: true}); err != nil || len(a.e.Hub.Sealed) != 2 {
		t.Errorf("second seal with --force: %v", err)
	}
}

// TestSealHubRefuses: a hub that refuses the record (another artifact key)
// leaves nothing written.
func TestSealHubRefuses(t *testing.T) {
	ks, other := testKeys(t), testKeys(t)
	a := newAcceptEnv(t)
	a.e.Hub.ArtifactKey = other.SigningPub
	dir, _ := sealBuild(t, a, ks)
	a.cfg.AllowUnchecked = []string{UncheckedDrill}
	if _, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks}); err == nil || a.e.Hub.SealCalls != 1 {
		t.Fatalf("sealed at a hub with another artifact key: %v", err)
	}
	noRecord(t, dir)
}

// TestSealEtcdSnapshot: the record of a cluster that runs etcd names the
// newest snapshot the hub lists, or says why there is none; a snapshot the
// hub describes badly seals nothing.
func TestSealEtcdSnapshot(t *testing.T) {
	ks := testKeys(t)
	newer := api.EtcdSnapshot{Name: "etcd-20261206T160000Z-cp-1.db", Member: "cp-1", Taken: time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC),
		Bytes: 4096, SHA256: strings.Repeat("ab", 32), Revision: 51}
	older := api.EtcdSnapshot{Name: "etcd-20261206T150000Z-cp-1.db", Member: "cp-1", Taken: newer.Taken.Add(-time.Hour),
		Bytes: 4000, SHA256: strings.Repeat("cd", 32)}
	bad := newer
	bad.SHA256 = "not a digest"
	for _, tt := range []struct {
		name  string
		snaps *api.EtcdSnapshots
		want  manifest.AcceptanceEtcdSnapshot
		fails bool
	}{
		{"the hub keeps none", nil, manifest.AcceptanceEtcdSnapshot{None: EtcdSnapshotNotKept}, false},
		{"none yet", &api.EtcdSnapshots{Kept: true}, manifest.AcceptanceEtcdSnapshot{None: EtcdSnapshotNoneYet}, false},
		{"the newest of two, listed in any order", &api.EtcdSnapshots{Kept: true, Snapshots: []api.EtcdSnapshot{older, newer}},
			manifest.AcceptanceEtcdSnapshot{Name: newer.Name, Member: "cp-1", Taken: newer.Taken, Bytes: 4096, SHA256: newer.SHA256, Revision: 51}, false},
		{"a malformed digest", &api.EtcdSnapshots{Kept: true, Snapshots: []api.EtcdSnapshot{bad}}, manifest.AcceptanceEtcdSnapshot{}, true},
	} {
		a := newAcceptEnv(t)
		a.e.Hub.ArtifactKey = ks.SigningPub
		a.e.Hub.EtcdSnaps = tt.snaps
		dir, _ := sealBuild(t, a, ks)
		a.cfg.AllowUnchecked = []string{UncheckedDrill}
		res, err := Seal(context.Background(), SealConfig{Accept: a.cfg, BuildDir: dir, Keys: ks})
		if tt.fails {
			if err == nil || !strings.Contains(err.Error(), "etcdSnapshot.sha256") || a.e.Hub.SealCalls != 0 {
				t.Errorf("%s: %v, %d seal calls", tt.name, err, a.e.Hub.SealCalls)
			}
			noRecord(t, dir)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		raw, err := os.ReadFile(res.RecordPath)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := manifest.ParseAcceptance(raw)
		if err != nil || rec.EtcdSnapshot == nil || *rec.EtcdSnapshot != tt.want {
			t.Errorf("%s: the record says %+v (%v), want %+v", tt.name, rec.EtcdSnapshot, err, tt.want)
		}
	}
}
