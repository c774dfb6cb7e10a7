package manifest

import (
	"strings"
	"testing"
)

func TestParseAcceptance(t *testing.T) {
	good := `{"apiVersion":"kubedos.io/v1alpha1","kind":"AcceptanceRecord","cluster":"c","time":"2026-12-05T22:00:00Z","wallTimeMS":5,` +
		`"buildID":"b","manifestSHA256":"x","checks":[{"name":"attested","outcome":"passed","node":"w-1"}],"nodes":[],"caSHA256":{},` +
		`"auditHead":{"seq":3,"hash":"h"}}`
	a, err := ParseAcceptance([]byte(good))
	if err != nil || a.AuditHead.Seq != 3 || a.Checks[0].Node != "w-1" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, tt := range []struct{ name, doc, want string }{
		{"unknown field", strings.Replace(good, `"wallTimeMS"`, `"wallTime":1,"wallTimeMS"`, 1), "unknown field"},
		{"another kind", strings.Replace(good, "AcceptanceRecord", "BuildManifest", 1), "not an acceptance record"},
		{"no cluster", strings.Replace(good, `"cluster":"c"`, `"cluster":""`, 1), "not an acceptance record"},
		{"trailing data", good + "{}", "data after"},
		{"over the bound", good + strings.Repeat(" ", MaxAcceptanceBytes), "more than"},
	} {
		if _, err := ParseAcceptance([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestParseAcceptanceEtcdSnapshot: a record before etcd snapshot anchors
// still parses (the field is optional); a named snapshot or a note parses;
// both, neither, or a malformed field is refused naming it.
func TestParseAcceptanceEtcdSnapshot(t *testing.T) {
	old := `{"apiVersion":"kubedos.io/v1alpha1","kind":"AcceptanceRecord","cluster":"c","time":"2026-12-05T22:00:00Z","wallTimeMS":5,` +
		`"buildID":"b","manifestSHA256":"x","checks":[],"nodes":[],"caSHA256":{},"auditHead":{"seq":3,"hash":"h"}}`
	if a, err := ParseAcceptance([]byte(old)); err != nil || a.EtcdSnapshot != nil {
		t.Fatalf("a record without etcdSnapshot: %+v %v", a, err)
	}
	with := func(snap string) []byte {
		return []byte(strings.TrimSuffix(old, "}") + `,"etcdSnapshot":` + snap + "}")
	}
	sum := strings.Repeat("0a", 32)
	named := `{"name":"etcd-20261206T150000Z-cp-1.db","member":"cp-1","taken":"2026-12-06T15:00:00Z","bytes":4096,"sha256":"` + sum + `"}`
	a, err := ParseAcceptance(with(named))
	if err != nil || a.EtcdSnapshot == nil || a.EtcdSnapshot.Name != "etcd-20261206T150000Z-cp-1.db" || a.EtcdSnapshot.Bytes != 4096 || a.EtcdSnapshot.SHA256 != sum {
		t.Fatalf("a named snapshot: %+v %v", a, err)
	}
	if a, err := ParseAcceptance(with(strings.Replace(named, `"member"`, `"revision":51,"member"`, 1))); err != nil || a.EtcdSnapshot.Revision != 51 {
		t.Fatalf("a named snapshot: %+v %v", a, err)
	}
	if a, err := ParseAcceptance(with(`{"none":"the hub holds no etcd snapshot yet"}`)); err != nil || a.EtcdSnapshot.None == "" {
		t.Fatalf("a note: %+v %v", a, err)
	}
	for _, tt := range []struct{ name, snap, want string }{
		{"neither", `{}`, "etcdSnapshot.name"},
		{"both", strings.Replace(named, `"member"`, `"none":"x","member"`, 1), "both"},
		{"a path", strings.Replace(named, "etcd-2026", "../etcd-2026", 1), "etcdSnapshot.name"},
		{"no member", strings.Replace(named, `"cp-1"`, `""`, 1), "etcdSnapshot.member"},
		{"no time", strings.Replace(named, `"taken":"2026-12-06T15:00:00Z",`, "", 1), "etcdSnapshot.taken"},
		{"no size", strings.Replace(named, `4096`, `0`, 1), "etcdSnapshot.bytes"},
		{"a short digest", strings.Replace(named, sum, "0a0a", 1), "etcdSnapshot.sha256"},
		{"an upper-case digest", strings.Replace(named, sum, strings.ToUpper(sum), 1), "etcdSnapshot.sha256"},
		{"a long note", `{"none":"` + strings.Repeat("x", MaxEtcdSnapshotNone+1) + `"}`, "etcdSnapshot.none"},
		{"a negative revision", strings.Replace(named, `"member"`, `"revision":-1,"member"`, 1), "etcdSnapshot.revision"},
		{"an unknown field", strings.Replace(named, `"member"`, `"rev":7,"member"`, 1), "unknown field"},
	} {
		if _, err := ParseAcceptance(with(tt.snap)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
