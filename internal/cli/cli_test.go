package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/pki"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

const examplesDir = "../../examples"

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string // in stdout or stderr
	}{
		{"reference valid", []string{"spec", "validate", examplesDir + "/reference.yaml"}, 0, "valid: cluster \"reference\", 16 nodes"},
		{"local valid", []string{"spec", "validate", examplesDir + "/local.yaml"}, 0, "4 nodes"},
		{"one node", []string{"spec", "validate", "../../e2e/testdata/one.yaml"}, 0, "1 node\n"},
		{"five mistakes", []string{"spec", "validate", "../spec/testdata/five-mistakes.yaml"}, 1, "five-mistakes.yaml:14:42: topology.nodes[1].vmid"},
		{"missing file", []string{"spec", "validate", "/nonexistent.yaml"}, 1, "read spec"},
		{"bad output", []string{"spec", "validate", "-o", "yaml", examplesDir + "/local.yaml"}, 1, `--output "yaml" is not supported`},
		{"no args", []string{"spec", "validate"}, 1, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out+errs, tt.want) {
				t.Fatalf("exit %d (want %d), output:\n%s%s\nwant %q", code, tt.wantCode, out, errs, tt.want)
			}
		})
	}
}

// TestSpecValidatePlacement: a refusal names the failure domain that
// would take etcd's quorum; one domain for all is valid with a warning.
func TestSpecValidatePlacement(t *testing.T) {
	raw, err := os.ReadFile(examplesDir + "/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := strings.Replace(string(raw), "address: 10.10.10.22, cpus: 2, memoryMiB: 4096, diskGiB: 32, failureDomain: rack-b",
		"address: 10.10.10.22, cpus: 2, memoryMiB: 4096, diskGiB: 32, failureDomain: rack-a", 1)
	if bad == string(raw) {
		t.Fatal("reference.yaml changed: etcd-2's line not found")
	}
	one := strings.NewReplacer("rack-b", "rack-a", "rack-c", "rack-a").Replace(string(raw))
	for name, doc := range map[string]string{"bad.yaml": bad, "one.yaml": one} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := run(t, "spec", "validate", filepath.Join(dir, "bad.yaml"))
	if code != 1 || !strings.Contains(errs, "topology.nodes: failure domain rack-a holds 2 of the 3 etcd members") {
		t.Errorf("etcd quorum in one rack: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, "spec", "validate", filepath.Join(dir, "one.yaml"))
	if code != 0 || !strings.Contains(errs, "warning: the 3 etcd members share failure domain rack-a") || !strings.Contains(out, "valid") {
		t.Errorf("one rack: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = run(t, "spec", "validate", "-o", "json", filepath.Join(dir, "one.yaml"))
	var rep validateReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.Valid || len(rep.Warnings) != 3 {
		t.Errorf("one rack -o json: exit %d\n%s", code, out)
	}
}

func TestSpecValidateJSON(t *testing.T) {
	code, out, _ := run(t, "spec", "validate", "-o", "json", "../spec/testdata/five-mistakes.yaml")
	var rep validateReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if code != 1 || rep.Valid || len(rep.Problems) != 5 || rep.Problems[0].Line == 0 {
		t.Fatalf("exit %d, report %+v", code, rep)
	}
}

func TestSpecInit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if code, _, errs := run(t, "spec", "init", "--topology", "reference", "--file", file); code != 0 {
		t.Fatalf("init failed: %s", errs)
	}
	if code, out, errs := run(t, "spec", "validate", file); code != 0 || !strings.Contains(out, "16 nodes") {
		t.Fatalf("written example does not validate: %s%s", out, errs)
	}
	if err := os.WriteFile(file, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, "spec", "init", "--file", file); code == 0 || !strings.Contains(errs, "already exists") {
		t.Fatalf("overwrote an existing file: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Fatal("existing file changed")
	}
	if code, _, _ := run(t, "spec", "init", "--file", file, "--force"); code != 0 {
		t.Fatal("--force refused")
	}
	if code, _, errs := run(t, "spec", "init", "--topology", "huge", "--file", "-"); code == 0 || !strings.Contains(errs, "local or reference") {
		t.Fatalf("bad topology accepted: %s", errs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestPlanOutputs(t *testing.T) {
	for _, format := range []string{"text", "json", "dot"} {
		code, out, errs := run(t, "plan", "-o", format, examplesDir+"/local.yaml")
		if code != 0 || !strings.Contains(out, "attest/w-2") {
			t.Fatalf("%s: exit %d: %s%s", format, code, out, errs)
		}
	}
	if code, _, errs := run(t, "plan", "../spec/testdata/five-mistakes.yaml"); code != 1 || !strings.Contains(errs, "5 problem(s)") {
		t.Fatalf("invalid spec planned: %d %s", code, errs)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version", "-o", "json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || v["goVersion"] == nil {
		t.Fatalf("version -o json: %d %s", code, out)
	}
	if code, out, _ := run(t, "completion", "bash"); code != 0 || !strings.Contains(out, "kubedos") {
		t.Fatalf("completion bash: %d", code)
	}
}

func TestParseSamples(t *testing.T) {
	got, err := parseSamples("# HELP x y\n# TYPE x gauge\nkubedos_drift_items{kind=\"unexpected\"} 2\nkubedos_drift_checks_total 7\n" +
		`kubedos_node_info{node="w-1",build="a\"b\\c\nd"} 1` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []sample{
		{Name: "kubedos_drift_items", Labels: map[string]string{"kind": "unexpected"}, Value: 2},
		{Name: "kubedos_drift_checks_total", Value: 7},
		{Name: "kubedos_node_info", Labels: map[string]string{"node": "w-1", "build": "a\"b\\c\nd"}, Value: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"novalue", "x{a=\"1\" 1", "x{a=1} 1", "x nan-ish", `x{a="1} 1`} {
		if _, err := parseSamples(bad + "\n"); err == nil {
			t.Errorf("parseSamples(%q) accepted", bad)
		}
	}
}

func TestKeysIssue(t *testing.T) {
	dir := t.TempDir()
	keys, out := filepath.Join(dir, "keys"), filepath.Join(dir, "creds")
	if code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "t"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	code, stdout, stderr := run(t, "keys", "issue", "rita", "--role", "reader", "--keys", keys, "--out", out, "-o", "json")
	if code != 0 {
		t.Fatalf("keys issue: %s", stderr)
	}
	var rep issuedClient
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Role != "reader" || rep.Serial == "" {
		t.Fatalf("report %q: %v", stdout, err)
	}
	ca, err := pki.LoadCA(keys)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(rep.Cert, rep.Key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Authenticate(pair.Leaf, time.Now(), nil)
	if err != nil || p.Role != pki.RoleReader || p.Name != "rita" {
		t.Errorf("issued certificate authenticates as %+v, %v", p, err)
	}
	if fi, err := os.Stat(rep.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, %v; want 0600", fi.Mode(), err)
	}
	if code, _, stderr := run(t, "keys", "issue", "rita", "--dir", keys, "--out", out); code == 0 || !strings.Contains(stderr, "rita.crt exists") {
		t.Errorf("issuing over an existing credential: exit %d, %s", code, stderr)
	}
	if code, _, stderr := run(t, "keys", "issue", "bob", "--role", "root", "--dir", keys, "--out", out); code == 0 || !strings.Contains(stderr, "--role root") {
		t.Errorf("unknown role: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "bob.key")); !os.IsNotExist(err) {
		t.Errorf("a refused issue left a key: %v", err)
	}
	// --dir, the old name, still works.
	if code, _, stderr := run(t, "keys", "issue", "ops", "--dir", keys, "--out", out); code != 0 {
		t.Errorf("keys issue --dir: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "ops.crt")); err != nil {
		t.Errorf("keys issue --dir issued nothing: %v", err)
	}
}

// node list, keys revoke and audit find the hub from the cluster's state
// with --spec, and say where they looked when none answers.
func TestHubFromSpec(t *testing.T) {
	dir := t.TempDir()
	keys, state := filepath.Join(dir, "keys"), filepath.Join(dir, "state")
	specFile := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(specFile, examples.Local, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "local"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	for _, args := range [][]string{{"node", "list"}, {"audit"}, {"keys", "revoke", "x.crt", "--reason", "r"}} {
		args = append(args, "--spec", specFile, "--state", state, "--keys", keys)
		code, _, stderr := run(t, args...)
		if code == 0 || !strings.Contains(stderr, "no hub of cluster local found: looked at "+filepath.Join(state, "hub", "hub.addr")) {
			t.Errorf("%v with no hub: exit %d, %s", args, code, stderr)
		}
	}
	// Handed to the master, which does not answer: the error says where
	// the address came from.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	if err := os.MkdirAll(filepath.Join(state, "hub"), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := `{"node": "master", "addr": "` + addr + `", "at": "2026-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(state, "hub", cluster.HandoffFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "node", "list", "--spec", specFile, "--state", state, "--keys", keys)
	for _, want := range []string{addr, cluster.HandoffFile, "kept by master"} {
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("node list with the master's hub down: exit %d, %q lacks %q", code, stderr, want)
		}
	}
}
