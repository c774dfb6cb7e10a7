package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
)

func TestObservabilityConfig(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run(t, "observability", "config", examplesDir+"/reference.yaml", "--out", dir, "--nodes", "w-1,master", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	var rep observabilityReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.From != "nodes" || strings.Join(rep.Scraped, ",") != "master,w-1" || len(rep.Files) != 16+6 {
		t.Errorf("report %+v", rep)
	}
	for _, f := range rep.Files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "targets", "kubedosd-w-2.json"))
	if err != nil || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("w-2 (not named) targets: %q %v", b, err)
	}

	// Text output, every spec node; tls/ is left alone.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "tls"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "tls", "reader.key"), []byte("key"), 0o600))
	code, out, errs = run(t, "observability", "config", examplesDir+"/reference.yaml", "--out", dir)
	if code != 0 || !strings.Contains(out, "scraping 16 of 16 nodes (from the spec)") || !strings.Contains(out, "kubedos keys issue prometheus --role reader") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tls", "reader.key")); string(b) != "key" {
		t.Error("tls/reader.key was touched")
	}
}

func TestObservabilityConfigRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"observability", "config", examplesDir + "/reference.yaml"}, "--out DIR is required"},
		{"no prometheus node", []string{"observability", "config", "noprom.yaml", "--out", "x"}, "no node with role prometheus"},
		{"both choices", []string{"observability", "config", examplesDir + "/reference.yaml", "--out", "x", "--from-hub", "--nodes", "w-1"}, "give one"},
		{"unknown node", []string{"observability", "config", examplesDir + "/reference.yaml", "--out", "x", "--nodes", "w-9"}, `"w-9" is not in cluster reference`},
		{"bad output", []string{"observability", "config", examplesDir + "/reference.yaml", "--out", "x", "-o", "dot"}, "not supported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for i, a := range tt.args {
				switch a {
				case "x":
					tt.args[i] = filepath.Join(dir, "out")
				case "noprom.yaml":
					// local-k8s without its prometheus node.
					b, err := os.ReadFile(examplesDir + "/local-k8s.yaml")
					if err != nil {
						t.Fatal(err)
					}
					var keep []string
					for _, l := range strings.Split(string(b), "\n") {
						if !strings.Contains(l, "role: prometheus") {
							keep = append(keep, strings.Replace(l, "prometheus: true", "prometheus: false", 1))
						}
					}
					tt.args[i] = filepath.Join(dir, a)
					if err := os.WriteFile(tt.args[i], []byte(strings.Join(keep, "\n")), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			code, out, errs := run(t, tt.args...)
			if code == 0 || !strings.Contains(out+errs, tt.want) {
				t.Fatalf("exit %d, output %s%s, want %q", code, out, errs, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Error("a refused run wrote files")
			}
		})
	}
}

func TestEnrolledNodes(t *testing.T) {
	got := enrolledNodes([]api.Node{{Name: "master", State: api.NodeEnrolled}, {Name: "w-1", State: api.NodeRevoked},
		{Name: "w-2", State: api.NodeFenced}, {Name: "w-3", State: api.NodeQuarantined}, {Name: "lb-1", State: api.NodeEnrolled}, {Name: "lb-2", State: api.NodePending}})
	if want := []string{"master", "lb-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// --from-hub with a hub that does not answer fails, naming it, and writes nothing.
func TestObservabilityFromHubDown(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if code, _, stderr := run(t, "keys", "init", "--dir", keys, "--cluster", "reference"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	code, out, errs := run(t, "observability", "config", examplesDir+"/reference.yaml", "--out", filepath.Join(dir, "out"), "--from-hub", "--hub", addr, "--keys", keys)
	if code == 0 || !strings.Contains(errs, addr) {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("files written although the hub did not answer")
	}
}
