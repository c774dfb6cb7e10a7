package hub

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestDownloadEtcdSnapshot: an admin carries a kept snapshot off the hub
// over gRPC, byte for byte with the digest the hub computed, audited with
// it; a reader or an operator (the snapshot holds every Secret), a caller
// without a certificate, a name that is not a snapshot's, one not kept,
// and a hub that keeps none are refused, each before a byte is sent.
func TestDownloadEtcdSnapshot(t *testing.T) {
	e := newEnv(t)
	d := etcdsnap.NewDir(t.TempDir())
	body := make([]byte, 2*api.SnapshotChunkBytes+12345) // three messages
	rand.Read(body)
	if err := os.WriteFile(filepath.Join(d.Path(), snapNewer), body, 0o600); err != nil {
		t.Fatal(err)
	}
	e.etcdSnaps = d
	addr := serveTLS(t, e)
	ctx := context.Background()

	admin := adminClient(t, e, addr, clientCert(t, e, "alice", pki.RoleAdmin))
	var buf bytes.Buffer
	var told []int64
	desc, err := admin.DownloadEtcdSnapshot(ctx, snapNewer, &buf, nil, func(n int64) { told = append(told, n) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), body) || desc.SHA256 != sha(body) || desc.Bytes != int64(len(body)) || desc.Member != "cp-1" {
		t.Fatalf("got %d bytes described as %+v, want %d with sha256 %s", buf.Len(), desc, len(body), sha(body))
	}
	if len(told) != 3 || told[2] != int64(len(body)) {
		t.Errorf("progress told %v", told)
	}
	if a := e.lastAudit(); a.Action != string(pki.ActionEtcdSnapshotRead) || a.Outcome != OutcomeOK || a.Target != snapNewer ||
		!strings.Contains(a.Detail, "sha256:"+sha(body)) || !strings.Contains(a.Actor, "alice") {
		t.Errorf("the download audited as %+v", a)
	}

	for _, tt := range []struct {
		name    string
		client  *api.AdminClient
		snap    string
		code    codes.Code
		audited bool
	}{
		{"a reader", adminClient(t, e, addr, clientCert(t, e, "rita", pki.RoleReader)), snapNewer, codes.PermissionDenied, true},
		{"an operator", adminClient(t, e, addr, clientCert(t, e, "otto", pki.RoleOperator)), snapNewer, codes.PermissionDenied, true},
		{"no certificate", adminClient(t, e, addr, nil), snapNewer, codes.Unauthenticated, false},
		{"a path out of the directory", admin, "../hub.db", codes.InvalidArgument, true},
		{"a snapshot not kept", admin, snapOlder, codes.NotFound, true},
	} {
		before := e.lastAudit().Seq
		var got bytes.Buffer
		_, err := tt.client.DownloadEtcdSnapshot(ctx, tt.snap, &got, nil, nil)
		if status.Code(err) != tt.code || got.Len() != 0 {
			t.Errorf("%s: got %v and %d bytes, want %v and none", tt.name, err, got.Len(), tt.code)
		}
		if a := e.lastAudit(); tt.audited != (a.Seq == before+1 && a.Action == string(pki.ActionEtcdSnapshotRead) && a.Outcome != OutcomeOK) {
			t.Errorf("%s: audited %v, last entry %+v", tt.name, tt.audited, a)
		}
	}

	none := newEnv(t) // a hub that keeps no snapshots (off the master)
	noneAddr := serveTLS(t, none)
	_, err = adminClient(t, none, noneAddr, clientCert(t, none, "alice", pki.RoleAdmin)).DownloadEtcdSnapshot(ctx, snapNewer, &buf, nil, nil)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "keeps no etcd snapshots") {
		t.Errorf("a hub keeping none: %v", err)
	}
}

// TestTakeEtcdSnapshot: an operator has the hub take a snapshot now and
// gets its description; a reader may not; a failed take and a hub that
// takes none are refused; every call is audited.
func TestTakeEtcdSnapshot(t *testing.T) {
	e := newEnv(t)
	took := etcdsnap.Snapshot{Name: snapNewer, Member: "cp-1", Bytes: 4096, SHA256: strings.Repeat("ab", 32)}
	var fail error
	e.takeSnap = func(context.Context) (etcdsnap.Snapshot, error) { return took, fail }
	addr := serveTLS(t, e)
	ctx := context.Background()
	got, err := adminClient(t, e, addr, clientCert(t, e, "otto", pki.RoleOperator)).TakeEtcdSnapshot(ctx)
	if err != nil || got.Name != snapNewer || got.SHA256 != took.SHA256 || got.Bytes != 4096 {
		t.Fatalf("an operator's take: %+v, %v", got, err)
	}
	if a := e.lastAudit(); a.Action != string(pki.ActionEtcdSnapshotTake) || a.Outcome != OutcomeOK || a.Target != snapNewer ||
		!strings.Contains(a.Detail, "sha256:"+took.SHA256) || !strings.Contains(a.Actor, "otto") {
		t.Errorf("the take audited as %+v", a)
	}
	before := e.lastAudit().Seq
	if _, err := adminClient(t, e, addr, clientCert(t, e, "rita", pki.RoleReader)).TakeEtcdSnapshot(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a reader's take: %v, want PermissionDenied", err)
	}
	if a := e.lastAudit(); a.Seq != before+1 || a.Outcome == OutcomeOK {
		t.Errorf("the reader's take audited as %+v", a)
	}
	fail = errors.New("no member streamed a whole snapshot")
	if _, err := adminClient(t, e, addr, clientCert(t, e, "otto", pki.RoleOperator)).TakeEtcdSnapshot(ctx); err == nil || !strings.Contains(err.Error(), "no member streamed") {
		t.Errorf("a failed take: %v", err)
	}
	if a := e.lastAudit(); a.Action != string(pki.ActionEtcdSnapshotTake) || a.Outcome == OutcomeOK {
		t.Errorf("the failed take audited as %+v", a)
	}
	none := newEnv(t)
	_, err = adminClient(t, none, serveTLS(t, none), clientCert(t, none, "otto", pki.RoleOperator)).TakeEtcdSnapshot(ctx)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "takes no etcd snapshots") {
		t.Errorf("a hub taking none: %v", err)
	}
}
