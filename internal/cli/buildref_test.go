package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveBuild(t *testing.T) {
	out := t.TempDir()
	for _, d := range []string{"local/a1b2c3", "local/a1ffff", "other/99aa00"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "local", "99file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(out, "local", "a1b2c3")
	for _, tc := range []struct{ ref, want, err string }{
		{ref: dir, want: dir},
		{ref: "a1b2c3", want: dir},
		{ref: "a1b", want: dir},
		{ref: "99", want: filepath.Join(out, "other", "99aa00")}, // a file of that name is not a build
		{ref: "a1", err: "ambiguous"},
		{ref: "ffff", err: "no build ffff*"},
		{ref: "", err: "--build is required"},
		{ref: "../x", err: "no such build directory"},
		{ref: "a*", err: "no such build directory"},
	} {
		got, err := resolveBuild(tc.ref, out)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolveBuild(%q) = %q, %v; want error %q", tc.ref, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolveBuild(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
}
