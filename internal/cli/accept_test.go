package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps/stepstest"
	"github.com/kubedos/kubedos/internal/wg"
)

// TestClusterAcceptCommand: the gate's report as text and JSON, exit 2
// naming the failing node and what, and "accepted except" only for the
// unchecked items --allow-unchecked names.
func TestClusterAcceptCommand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, examples.Local, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e := stepstest.Serve(t, s, "b-1")
	keys := e.WriteKeys(t)
	var addrs []string
	for name, addr := range e.NodeAddrs {
		addrs = append(addrs, name+"="+addr)
	}
	handshakes := func(at time.Time) {
		for _, n := range s.Topology.Nodes {
			ps := api.Planes{Joined: time.Now()}
			for _, p := range spec.Planes {
				st := wg.Status{Plane: string(p), Interface: wg.InterfaceName(p), Up: true}
				for _, o := range s.Topology.Nodes {
					if o.Name != n.Name && (n.Name == "master" || o.Name == "master") {
						st.Peers = append(st.Peers, wg.PeerStatus{Name: o.Name, LatestHandshake: at})
					}
				}
				ps.Interfaces = append(ps.Interfaces, st)
			}
			e.Nodes[n.Name].SetPlanes(ps)
		}
	}
	flags := []string{"--hub", e.HubAddr, "--keys", keys, "--node-addr", strings.Join(addrs, ","), "--state", filepath.Join(dir, "state")}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}

	handshakes(time.Now().Add(-10 * time.Minute))
	code, out, errs := run(append([]string{"cluster", "accept", path, "--allow-unchecked", "drill,build"}, flags...)...)
	if code != 2 || !strings.Contains(out, "FAILED       plane control        w-1") || !regexp.MustCompile(`last handshake with master on wg-control was 10m\d+s ago`).MatchString(out) ||
		!strings.Contains(out, "NOT accepted: plane control on master, plane control on w-1") || !strings.Contains(out, "gate wall time") {
		t.Errorf("stale handshakes: exit %d\n%s%s", code, out, errs)
	}

	handshakes(time.Now().Add(-20 * time.Second))
	code, out, errs = run(append([]string{"cluster", "accept", path}, flags...)...)
	if code != 2 || !strings.Contains(out, "not checked  drill") || !strings.Contains(out, "drill (not checked; --allow-unchecked drill accepts without it)") {
		t.Errorf("drill not allowed: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(append([]string{"cluster", "accept", path, "--allow-unchecked", "drill,build"}, flags...)...)
	if code != 0 || !strings.Contains(out, "passed       attested             w-1") || !strings.Contains(out, "accepted except drill, build (not checked, allowed by --allow-unchecked)") {
		t.Errorf("healthy: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(append([]string{"cluster", "accept", path, "--allow-unchecked", "drill,build", "-o", "json"}, flags...)...)
	var res cluster.AcceptResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Accepted || len(res.Checks) != 4+12+2 || res.WallTime <= 0 {
		t.Errorf("-o json: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs = run(append([]string{"cluster", "accept", path, "--allow-unchecked", "drill,tests"}, flags...)...); code != 1 || !strings.Contains(errs, `"tests"`) {
		t.Errorf("unknown item: exit %d, %s", code, errs)
	}
	for _, tc := range []struct{ node, want string }{
		{"master", "a master keeps the hub"},
		{"w-9", "no node w-9"},
		{"w-1", "--drill w-1 needs --build"},
	} {
		if code, _, errs = run(append([]string{"cluster", "accept", path, "--drill", tc.node}, flags...)...); code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("--drill %s: exit %d, %s", tc.node, code, errs)
		}
	}
	if code, _, errs = run(append([]string{"cluster", "seal", path}, flags...)...); code != 1 || !strings.Contains(errs, "--build is required") {
		t.Errorf("seal without --build: exit %d, %s", code, errs)
	}
}
