package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// Two snapshots the etcd hub keeps, both taken before the record (t0).
const (
	snapOlder = "etcd-20260601T100000Z-cp-1.db"
	snapNewer = "etcd-20260601T110000Z-cp-1.db"
)

// etcdSealEnv is sealEnv for a cluster that runs etcd (a stacked control
// plane), its hub keeping two snapshots, and a record naming the newer.
func etcdSealEnv(t *testing.T) (*env, *manifest.Acceptance, *etcdsnap.Dir) {
	t.Helper()
	e, rec := sealEnv(t)
	e.spec = &spec.ClusterSpec{Metadata: spec.Metadata{Name: "t"},
		Topology:  spec.Topology{Nodes: []spec.Node{{Name: "cp-1", Role: spec.RoleControlPlane, Address: "10.0.0.11"}}},
		Workloads: spec.Workloads{Kubernetes: spec.Kubernetes{Enabled: true}}}
	d := etcdsnap.NewDir(t.TempDir())
	for _, name := range []string{snapOlder, snapNewer} {
		if err := os.WriteFile(filepath.Join(d.Path(), name), []byte("bbolt of "+name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.etcdSnaps = d
	e.newHub()
	rec.EtcdSnapshot = &manifest.AcceptanceEtcdSnapshot{Name: snapNewer, Member: "cp-1",
		Taken: time.Date(2026, 6, 1, 11, 0, 0, 0, time.UTC), Bytes: int64(len("bbolt of " + snapNewer)), SHA256: sha([]byte("bbolt of " + snapNewer))}
	return e, rec, d
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestSealEtcdSnapshotRefusals: a record of a cluster that runs etcd must
// name a snapshot this hub holds, with its digest, size, member and time,
// or say there is none only when the hub holds none older than the
// record; otherwise it is refused, audited, and nothing is sealed.
func TestSealEtcdSnapshotRefusals(t *testing.T) {
	e, rec, _ := etcdSealEnv(t)
	ctx := context.Background()
	with := func(f func(s *manifest.AcceptanceEtcdSnapshot)) *manifest.Acceptance {
		r := *rec
		if f == nil {
			r.EtcdSnapshot = nil
			return &r
		}
		s := *rec.EtcdSnapshot
		f(&s)
		r.EtcdSnapshot = &s
		return &r
	}
	for _, tt := range []struct {
		name string
		rec  *manifest.Acceptance
		want string
	}{
		{"no snapshot named", with(nil), "names no etcd snapshot"},
		{"a snapshot the hub does not hold", with(func(s *manifest.AcceptanceEtcdSnapshot) {
			s.Name, s.Taken = "etcd-20260601T113000Z-cp-1.db", s.Taken.Add(30*time.Minute)
		}), "does not hold"},
		{"a wrong digest", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.SHA256 = strings.Repeat("0f", 32) }), "sha256"},
		{"a wrong size", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.Bytes++ }), "bytes"},
		{"another member", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.Member = "cp-2" }), "member"},
		{"another time", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.Taken = s.Taken.Add(time.Hour) }), "taken"},
		{"another revision", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.Revision = 7 }), "revision 7"},
		{"a path out of the directory", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.Name = "../hub.db" }), "etcdSnapshot.name"},
		{"another file of the directory", with(func(s *manifest.AcceptanceEtcdSnapshot) { s.Name = "hub.db" }), "not a snapshot name"},
		{"none while the hub holds one", with(func(s *manifest.AcceptanceEtcdSnapshot) {
			*s = manifest.AcceptanceEtcdSnapshot{None: "the hub holds no etcd snapshot yet"}
		}), snapNewer},
	} {
		raw, sig := signRecord(t, e.artifact, tt.rec)
		before := e.lastAudit().Seq
		_, err := e.hub.Seal(ctx, admin, raw, sig)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", tt.name, err, tt.want)
		}
		if a := e.lastAudit(); a.Seq != before+1 || a.Action != string(pki.ActionSeal) || a.Outcome != OutcomeFailed {
			t.Errorf("%s: audited as %+v", tt.name, a)
		}
	}

	// A hub that keeps no snapshots (not on the master) holds none to name.
	e.etcdSnaps = nil
	e.newHub()
	raw, sig := signRecord(t, e.artifact, rec)
	if _, err := e.hub.Seal(ctx, admin, raw, sig); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "keeps no etcd snapshots") {
		t.Errorf("a snapshot named to a hub that keeps none: %v", err)
	}
}

// TestSealEtcdSnapshot: the record naming the newest snapshot is sealed,
// and the entry names it; a note is sealed by a hub that holds none
// older than the record; a record without the field still seals for a
// cluster without etcd.
func TestSealEtcdSnapshot(t *testing.T) {
	e, rec, d := etcdSealEnv(t)
	ctx := context.Background()
	raw, sig := signRecord(t, e.artifact, rec)
	if _, err := e.hub.Seal(ctx, admin, raw, sig); err != nil {
		t.Fatal(err)
	}
	if a := e.lastAudit(); !strings.Contains(a.Detail, "etcd snapshot "+snapNewer+" sha256:"+rec.EtcdSnapshot.SHA256) {
		t.Errorf("seal entry %q does not name the snapshot", a.Detail)
	}

	// Snapshots taken after the record began do not make its note a lie.
	for _, name := range []string{snapOlder, snapNewer} {
		if err := os.Remove(filepath.Join(d.Path(), name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.Path(), "etcd-20260601T120500Z-cp-1.db"), []byte("later"), 0o600); err != nil {
		t.Fatal(err)
	}
	none := *rec
	none.EtcdSnapshot = &manifest.AcceptanceEtcdSnapshot{None: "the hub holds no etcd snapshot yet"}
	none.AuditHead = headOf(t, e)
	raw, sig = signRecord(t, e.artifact, &none)
	if _, err := e.hub.Seal(ctx, admin, raw, sig); err != nil {
		t.Fatalf("a note while the hub held none older than the record: %v", err)
	}
	if a := e.lastAudit(); !strings.Contains(a.Detail, "no etcd snapshot (the hub holds no etcd snapshot yet)") {
		t.Errorf("seal entry %q does not carry the note", a.Detail)
	}

	e.spec.Workloads.Kubernetes.Enabled = false
	e.etcdSnaps = nil
	e.newHub()
	plain := *rec
	plain.EtcdSnapshot, plain.AuditHead = nil, headOf(t, e)
	raw, sig = signRecord(t, e.artifact, &plain)
	if _, err := e.hub.Seal(ctx, admin, raw, sig); err != nil {
		t.Errorf("a record without etcd of a cluster without etcd: %v", err)
	}
}

func headOf(t *testing.T, e *env) manifest.AuditHead {
	t.Helper()
	h, err := e.store.VerifyAuditChain()
	if err != nil {
		t.Fatal(err)
	}
	return manifest.AuditHead{Seq: h.Seq, Hash: h.Hash}
}

// TestEtcdSnapshots: a reader lists the kept snapshots, newest first; a
// node may not; a hub that keeps none says so.
func TestEtcdSnapshots(t *testing.T) {
	e, _, _ := etcdSealEnv(t)
	ctx := context.Background()
	got, err := e.hub.EtcdSnapshots(ctx, reader)
	if err != nil || !got.Kept || len(got.Snapshots) != 2 || got.Snapshots[0].Name != snapNewer || got.Snapshots[0].SHA256 != sha([]byte("bbolt of "+snapNewer)) {
		t.Fatalf("listed %+v %v", got, err)
	}
	if _, err := e.hub.EtcdSnapshots(ctx, pki.Peer{Name: "w-1", Role: pki.RoleNode}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a node listed the snapshots: %v", err)
	}
	e.etcdSnaps = nil
	e.newHub()
	if got, err := e.hub.EtcdSnapshots(ctx, reader); err != nil || got.Kept || len(got.Snapshots) != 0 {
		t.Errorf("a hub keeping none: %+v %v", got, err)
	}
}

// TestEtcdSnapshotsOverGRPC: a reader's certificate lists the snapshots
// over the admin RPC; a record naming the newest seals over it too.
func TestEtcdSnapshotsOverGRPC(t *testing.T) {
	e, rec, _ := etcdSealEnv(t)
	addr := serveTLS(t, e)
	ctx := context.Background()
	got, err := adminClient(t, e, addr, clientCert(t, e, "rita", pki.RoleReader)).EtcdSnapshots(ctx)
	if err != nil || !got.Kept || len(got.Snapshots) != 2 || got.Snapshots[0].Name != snapNewer || got.Snapshots[1].Name != snapOlder ||
		got.Snapshots[0].SHA256 != rec.EtcdSnapshot.SHA256 || !got.Snapshots[0].Taken.Equal(rec.EtcdSnapshot.Taken) {
		t.Fatalf("listed %+v %v", got, err)
	}
	adm := adminClient(t, e, addr, clientCert(t, e, "alice", pki.RoleAdmin))
	head, err := adm.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec.AuditHead = manifest.AuditHead{Seq: head.Head.Seq, Hash: head.Head.Hash}
	raw, sig := signRecord(t, e.artifact, rec)
	if _, err := adm.Seal(ctx, raw, sig); err != nil {
		t.Errorf("sealing a record naming the listed snapshot: %v", err)
	}
}
