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
