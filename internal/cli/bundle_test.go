package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/manifest"
)

// The bundle commands refuse what they cannot do before reading anything.
func TestBundleCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bundle", "extract", "x.tar", "--keys", dir}, "--dir is required"},
		{[]string{"bundle", "verify", "x.tar", "--keys", dir}, "pubkey"},
		{[]string{"bundle", "verify", "x.tar", "--pubkey", dir + "/none.pub"}, "none.pub"},
		{[]string{"bundle", "create", "nosuchbuild", "--out", dir}, "no build nosuchbuild"},
		{[]string{"bundle", "verify", "x.tar", "-o", "dot"}, "output"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want it to say %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestPrintAnchors: a record's etcd snapshot, or its note, is shown with
// the anchors; a record without one (no etcd, or sealed before) shows none.
func TestPrintAnchors(t *testing.T) {
	a := &manifest.Acceptance{Time: time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC), AuditHead: manifest.AuditHead{Seq: 9, Hash: "h"}}
	sum := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		snap *manifest.AcceptanceEtcdSnapshot
		want []string
	}{
		{nil, nil},
		{&manifest.AcceptanceEtcdSnapshot{None: "no etcd snapshot yet: soon"}, []string{"etcd snapshot: none named (no etcd snapshot yet: soon)"}},
		{&manifest.AcceptanceEtcdSnapshot{Name: "etcd-20261206T160000Z-cp-1.db", Member: "cp-1", Taken: time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC), Bytes: 4096, SHA256: sum, Revision: 51},
			[]string{"etcd-20261206T160000Z-cp-1.db from member cp-1", "taken 2026-12-06T16:00:00Z", "4096 bytes, etcd revision 51", "sha256 " + sum}},
	} {
		a.EtcdSnapshot = tt.snap
		var b strings.Builder
		printAnchors(&b, a)
		out := b.String()
		if !strings.Contains(out, "hub audit chain at entry 9") || strings.Contains(out, "etcd snapshot") != (tt.snap != nil) {
			t.Errorf("anchors of %+v:\n%s", tt.snap, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("anchors of %+v:\n%s\nwant %q", tt.snap, out, w)
			}
		}
	}
}
