package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
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
