package cli

import (
	"strings"
	"testing"
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
