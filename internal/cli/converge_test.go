package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps/stepstest"
)

func TestConvergeCommand(t *testing.T) {
	dir := t.TempDir()
	writeSpec := func(name, forward string) string {
		p := filepath.Join(dir, name)
		data := string(examples.Local) + "nodeConfig:\n  worker:\n    sysctls:\n      net.ipv4.ip_forward: \"" + forward + "\"\n"
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	path := writeSpec("cluster.yaml", "1")
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
	flags := []string{"--hub", e.HubAddr, "--keys", keys, "--node-addr", strings.Join(addrs, ","), "--state", filepath.Join(dir, "state")}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := run(append([]string{"converge", path}, flags...)...)
	if code != 0 || !strings.Contains(out, "changed    converge/worker") || !strings.Contains(out, "net.ipv4.ip_forward") ||
		!strings.Contains(out, "1 changed, 16 unchanged, 0 drifted, 0 failed, 0 skipped") || !strings.Contains(out, "recorded at the hub as run 1") {
		t.Fatalf("first converge: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(append([]string{"converge", path, "-o", "json"}, flags...)...)
	var rec api.RunRecord
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec.Seq != 2 || rec.Counts.Unchanged != 17 || rec.Outcome != "converged" {
		t.Fatalf("second converge -o json: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "unchanged  attest/w-1") {
		t.Errorf("json mode: progress should go to stderr, got %q", errs)
	}

	code, out, errs = run("plan", path, "--hub", e.HubAddr, "--keys", keys)
	if code != 0 || !strings.Contains(out, "Last run at the hub: run 2, converged") || !strings.Contains(out, "attest/master [unchanged]") ||
		!strings.Contains(out, "converge/worker [unchanged]") || !strings.Contains(out, "enroll/w-1  <-") {
		t.Errorf("plan with the last run: exit %d\n%s%s", code, out, errs)
	}

	if code, out, errs = run(append([]string{"converge", writeSpec("off.yaml", "0"), "--check"}, flags...)...); code != 2 || !strings.Contains(out, "drifted    converge/worker") {
		t.Errorf("--check with drift: exit %d, want 2\n%s%s", code, out, errs)
	}
	if e.Nodes["w-1"].Applies != 1 {
		t.Errorf("w-1 applied %d times, want 1 (--check applies nothing)", e.Nodes["w-1"].Applies)
	}

	e.Hub.SetNode(api.Node{Name: "w-1", Role: "worker", State: "quarantined", Reason: &api.Refusal{Check: "pcr", Detail: "PCR 4 differs"}})
	code, out, errs = run(append([]string{"converge", path, "--step-timeout", "5s", "--retries", "0"}, flags...)...)
	if code != 1 || !strings.Contains(out, "failed     attest/w-1") || !strings.Contains(out, "w-1 is quarantined, not enrolled (pcr: PCR 4 differs)") ||
		!strings.Contains(out, "skipped    converge/worker") {
		t.Errorf("quarantined node: exit %d\n%s%s", code, out, errs)
	}
}
