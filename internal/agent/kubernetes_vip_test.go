package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// Where the control planes hold the VIP, keepalived's readiness file
// follows the local /readyz: not ready from the start (a node coming back
// must not claim the VIP), ready at the first success, not ready again
// only after apiNotReadyAfter failures in a row (one slow answer must not
// move the VIP).
func TestTrackAPIReady(t *testing.T) {
	p := planOf(t, examples.LocalHA, "cp-2")
	k, _, _ := newTestRunner(t, p)
	k.lanInterface = func(string) (string, error) { return "ens18", nil }
	giveCerts(t, k.root, p)
	// A member with its data directory decides no join (no etcd to ask).
	if err := os.MkdirAll(filepath.Join(k.root, etcdMemberDir), 0o700); err != nil {
		t.Fatal(err)
	}
	ready := false
	k.localAPIReady = func(context.Context, *kubeplan.Plan) error {
		if ready {
			return nil
		}
		return errors.New("GET /readyz: 500")
	}
	file := filepath.Join(k.root, kubeplan.APINotReadyFile)
	for i, c := range []struct {
		ready bool
		want  string
	}{
		{false, "1"}, {false, "1"}, {true, "0"},
		{false, "0"}, {false, "0"}, {false, "1"},
		{true, "0"}, {false, "0"}, {true, "0"}, {false, "0"}, {false, "0"}, {false, "1"},
	} {
		ready = c.ready
		if err := k.once(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want+"\n" {
			t.Fatalf("check %d (ready %v): the file says %q, want %q", i+1, c.ready, got, c.want)
		}
	}
	kc, err := os.ReadFile(filepath.Join(k.root, kubeplan.KeepalivedConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kc), kubeplan.APINotReadyFile) || !strings.Contains(string(kc), "track_file") {
		t.Errorf("keepalived.conf does not track %s:\n%s", kubeplan.APINotReadyFile, kc)
	}

	// Behind load balancers (haproxy checks /readyz) and without a VIP the
	// file is not written.
	for _, c := range []struct {
		doc  []byte
		node string
	}{{examples.LocalK8s, "cp-1"}} {
		p := planOf(t, c.doc, c.node)
		k, _, _ := newTestRunner(t, p)
		giveCerts(t, k.root, p)
		k.localAPIReady = func(context.Context, *kubeplan.Plan) error { t.Fatal("asked without a VIP to hold"); return nil }
		if err := k.once(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(k.root, kubeplan.APINotReadyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: readiness file written (%v)", c.node, err)
		}
	}
}
