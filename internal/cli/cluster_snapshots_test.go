package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// snapHub answers EtcdSnapshots with snaps.
type snapHub struct {
	api.AdminServer
	snaps api.EtcdSnapshots
}

func (h *snapHub) EtcdSnapshots(context.Context, *api.EtcdSnapshotsRequest) (*api.EtcdSnapshots, error) {
	out := h.snaps
	return &out, nil
}

// TestClusterSnapshots: a table newest first, the same in JSON, and the
// two answers without snapshots said in words, exit 0.
func TestClusterSnapshots(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	h := &snapHub{snaps: api.EtcdSnapshots{Kept: true, Snapshots: []api.EtcdSnapshot{
		{Name: "etcd-20261206T160000Z-cp-2.db", Member: "cp-2", Taken: time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC), Bytes: 3 << 20, SHA256: sum, Revision: 51},
		{Name: "etcd-20261206T150000Z-cp-1.db", Member: "cp-1", Taken: time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC), Bytes: 1 << 19, SHA256: sum}}}}
	keys, addr := serveRetireHub(t, h)
	flags := []string{"cluster", "snapshots", "--hub", addr, "--keys", keys}
	code, out, errs := run(t, flags...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[1], "etcd-20261206T160000Z-cp-2.db") ||
		!strings.Contains(lines[1], "2026-12-06T16:00:00Z") || !strings.Contains(lines[1], "3.0 MiB") || !strings.Contains(lines[1], " 51 ") || !strings.Contains(lines[2], " - ") || !strings.Contains(lines[1], sum) ||
		!strings.Contains(lines[2], "0.5 MiB") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, append(flags, "-o", "json")...)
	var got api.EtcdSnapshots
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || !got.Kept || len(got.Snapshots) != 2 || got.Snapshots[0].Bytes != 3<<20 {
		t.Errorf("-o json: exit %d\n%s%s", code, out, errs)
	}
	for _, tt := range []struct {
		snaps api.EtcdSnapshots
		want  string
	}{{api.EtcdSnapshots{Kept: true}, "no etcd snapshot yet"}, {api.EtcdSnapshots{}, "keeps no etcd snapshots"}} {
		h.snaps = tt.snaps
		if code, out, errs := run(t, flags...); code != 0 || !strings.Contains(out, tt.want) {
			t.Errorf("exit %d, %q%s, want %q", code, out, errs, tt.want)
		}
	}
}

// snapGetHub also sends snapshots: body under each name, described with
// sum (the body's own digest when empty).
type snapGetHub struct {
	snapHub
	body []byte
	sum  string
}

func (h *snapGetHub) Download(r *api.EtcdSnapshotRequest, out api.SnapshotSender) error {
	for _, s := range h.snaps.Snapshots {
		if s.Name != r.Name {
			continue
		}
		s.Bytes, s.SHA256 = int64(len(h.body)), h.sum
		if s.SHA256 == "" {
			d := sha256.Sum256(h.body)
			s.SHA256 = hex.EncodeToString(d[:])
		}
		if err := out.Send(&api.EtcdSnapshotChunk{Snapshot: &s}); err != nil {
			return err
		}
		return out.Send(&api.EtcdSnapshotChunk{Data: h.body})
	}
	return status.Error(codes.NotFound, "no such snapshot")
}

// TestClusterSnapshotsGet: the newest by default into a directory, a named
// one to a file, mode 0600, its digest printed (and in JSON); bytes that
// do not match the hub's digest and a snapshot the hub lacks exit 1 and
// leave nothing, not even a temporary file.
func TestClusterSnapshotsGet(t *testing.T) {
	body := []byte("bbolt bytes of a snapshot")
	d := sha256.Sum256(body)
	sum := hex.EncodeToString(d[:])
	newer, older := "etcd-20261206T160000Z-cp-2.db", "etcd-20261206T150000Z-cp-1.db"
	h := &snapGetHub{body: body, snapHub: snapHub{snaps: api.EtcdSnapshots{Kept: true, Snapshots: []api.EtcdSnapshot{
		{Name: older, Member: "cp-1", Taken: time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)},
		{Name: newer, Member: "cp-2", Taken: time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)}}}}}
	keys, addr := serveRetireHub(t, h)
	dir := t.TempDir()
	flags := []string{"--hub", addr, "--keys", keys}

	code, out, errs := run(t, append([]string{"cluster", "snapshots", "get", "--out", dir}, flags...)...)
	got, err := os.ReadFile(filepath.Join(dir, newer))
	if code != 0 || err != nil || !bytes.Equal(got, body) || !strings.Contains(out, sum) || !strings.Contains(errs, "written and checked") {
		t.Fatalf("get the newest: exit %d, %v\n%s%s", code, err, out, errs)
	}
	if fi, _ := os.Stat(filepath.Join(dir, newer)); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	file := filepath.Join(dir, "older.db")
	code, out, errs = run(t, append([]string{"cluster", "snapshots", "get", older, "--out", file, "-o", "json"}, flags...)...)
	var js struct {
		api.EtcdSnapshot
		Path string `json:"path"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || js.Path != file || js.SHA256 != sum || js.Member != "cp-1" {
		t.Fatalf("get a named one -o json: exit %d\n%s%s", code, out, errs)
	}

	bad := t.TempDir()
	h.sum = strings.Repeat("0", 64)
	if code, out, errs := run(t, append([]string{"cluster", "snapshots", "get", "--out", bad}, flags...)...); code != 1 || !strings.Contains(errs, "does not match") {
		t.Errorf("bytes unlike the digest: exit %d\n%s%s", code, out, errs)
	}
	h.sum = ""
	if code, out, errs := run(t, append([]string{"cluster", "snapshots", "get", "etcd-20261206T170000Z-cp-3.db", "--out", bad}, flags...)...); code != 1 || !strings.Contains(errs, "no such snapshot") {
		t.Errorf("a snapshot the hub lacks: exit %d\n%s%s", code, out, errs)
	}
	if left, _ := os.ReadDir(bad); len(left) != 0 {
		t.Errorf("failed downloads left %v", left)
	}
	if code, _, errs := run(t, append([]string{"cluster", "snapshots", "get", "--out", filepath.Join(bad, "no", "such.db")}, flags...)...); code != 1 || !strings.Contains(errs, "no such directory") {
		t.Errorf("--out in a missing directory: exit %d, %s", code, errs)
	}
	h.snaps = api.EtcdSnapshots{Kept: true}
	if code, _, errs := run(t, append([]string{"cluster", "snapshots", "get", "--out", bad}, flags...)...); code != 1 || !strings.Contains(errs, "no etcd snapshot yet") {
		t.Errorf("none yet: exit %d, %s", code, errs)
	}
}

// TestClusterSnapshotsRestoreNeedsYes: without --yes the restore names
// the members whose data it would replace and does nothing (not even
// reading the keys); a name that is not a snapshot's is refused before any
// node is asked.
func TestClusterSnapshotsRestoreNeedsYes(t *testing.T) {
	code, out, errs := run(t, "cluster", "snapshots", "restore", "../../examples/local-ha.yaml", "--keys", filepath.Join(t.TempDir(), "none"))
	if code != 1 || out != "" || !strings.Contains(errs, "every member (cp-1, cp-2, cp-3) with the newest snapshot") || !strings.Contains(errs, "--yes") {
		t.Errorf("without --yes: exit %d\n%s%s", code, out, errs)
	}
	code, _, errs = run(t, "cluster", "snapshots", "restore", "../../examples/reference.yaml", "etcd-20261207T210000Z-etcd-2.db", "--keys", "none")
	if code != 1 || !strings.Contains(errs, "(etcd-1, etcd-2, etcd-3) with etcd-20261207T210000Z-etcd-2.db") {
		t.Errorf("the reference, a named snapshot: exit %d\n%s", code, errs)
	}
}

// snapTakeHub takes one snapshot when asked.
type snapTakeHub struct {
	snapHub
	took int
}

func (h *snapTakeHub) TakeEtcdSnapshot(context.Context, *api.TakeEtcdSnapshotRequest) (*api.EtcdSnapshot, error) {
	h.took++
	return &api.EtcdSnapshot{Name: "etcd-20261207T220000Z-cp-1.db", Member: "cp-1", Bytes: 4096, SHA256: strings.Repeat("cd", 32)}, nil
}

// TestClusterSnapshotsTake: the hub takes one and the CLI prints it (and
// its JSON).
func TestClusterSnapshotsTake(t *testing.T) {
	h := &snapTakeHub{}
	keys, addr := serveRetireHub(t, h)
	code, out, errs := run(t, "cluster", "snapshots", "take", "--hub", addr, "--keys", keys)
	if code != 0 || !strings.Contains(out, "etcd-20261207T220000Z-cp-1.db\tmember cp-1\t4096 bytes\tsha256:"+strings.Repeat("cd", 32)) || h.took != 1 {
		t.Fatalf("take: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, "cluster", "snapshots", "take", "--hub", addr, "--keys", keys, "-o", "json")
	var s api.EtcdSnapshot
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Bytes != 4096 || h.took != 2 {
		t.Fatalf("take -o json: exit %d\n%s%s", code, out, errs)
	}
}
