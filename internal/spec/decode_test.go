package spec

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
)

func TestParseStrict(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []Problem // path, line, column and a message fragment
	}{
		{"empty", "", []Problem{{Message: "empty"}}},
		{"not yaml", "a: [b", []Problem{{Message: "not valid YAML"}}},
		{"two documents", "kind: ClusterSpec\n---\nkind: ClusterSpec\n", []Problem{{Line: 2, Message: "single YAML document"}}},
		{"root not mapping", "- a\n", []Problem{{Line: 1, Column: 1, Message: "must be a mapping"}}},
		{"unknown top-level field", "apiVersion: x\nspecs: {}\n", []Problem{{Path: "specs", Line: 2, Column: 1, Message: `unknown field "specs"`}}},
		{"unknown nested fields all reported", "os:\n  suit: bookworm\ntopology:\n  nodes:\n    - name: a\n      ram: 3\n",
			[]Problem{{Path: "os.suit", Line: 2, Column: 3, Message: "unknown field"}, {Path: "topology.nodes[0].ram", Line: 6, Column: 7, Message: "unknown field"}}},
		{"int expected", "topology:\n  nodes:\n    - vmid: abc\n", []Problem{{Path: "topology.nodes[0].vmid", Line: 3, Column: 13, Message: "must be an integer"}}},
		{"bool expected", "trust:\n  secureBoot: yes please\n", []Problem{{Path: "trust.secureBoot", Line: 2, Message: "true or false"}}},
		{"list expected", "os:\n  packages: vim\n", []Problem{{Path: "os.packages", Line: 2, Message: "must be a list"}}},
		{"string expected", "metadata:\n  name: [a]\n", []Problem{{Path: "metadata.name", Line: 2, Message: "must be a string"}}},
		{"duplicate key", "kind: a\nkind: b\n", []Problem{{Path: "kind", Line: 2, Column: 1, Message: "duplicate key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(ps), len(tt.want), ps)
			}
			for i, w := range tt.want {
				got := ps[i]
				if got.Path != w.Path || (w.Line != 0 && got.Line != w.Line) || (w.Column != 0 && got.Column != w.Column) || !strings.Contains(got.Message, w.Message) {
					t.Errorf("problem %d: got %+v, want %+v", i, got, w)
				}
			}
		})
	}
}

func TestParseAnchorsAndNulls(t *testing.T) {
	doc, err := Parse([]byte("os:\n  packages: &p [vim]\n  rolePackages:\n    worker: *p\ntopology: ~\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Spec.OS.RolePackages[RoleWorker]; len(got) != 1 || got[0] != "vim" {
		t.Fatalf("alias not decoded: %v", got)
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse(make([]byte, MaxSpecBytes+1))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("want a size problem, got %v", err)
	}
}

// A file over the bound: Load's error names it, CheckFile reports it as a
// problem of the spec (as Check does), not as a failure to read.
func TestFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	big, limit := filepath.Join(dir, "big.yaml"), filepath.Join(dir, "limit.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte{' '}, MaxSpecBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(limit, bytes.Repeat([]byte{' '}, MaxSpecBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), big) {
		t.Errorf("Load: %v, want an error naming %s", err, big)
	}
	if _, ps, err := CheckFile(big); err != nil || len(ps) != 1 || !strings.Contains(ps[0].Message, "limit") {
		t.Errorf("CheckFile: %v, %v; want one size problem", ps, err)
	}
	// At the bound it is read and parsed (all blank: empty).
	if _, ps, err := CheckFile(limit); err != nil || len(ps) != 1 || ps[0].Message != "spec is empty" {
		t.Errorf("CheckFile at the bound: %v, %v; want \"spec is empty\"", ps, err)
	}
}

func TestDefaultsDoNotChangeInput(t *testing.T) {
	doc, err := Parse([]byte("apiVersion: kubedos.io/v1alpha1\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := WithDefaults(doc.Spec)
	if doc.Spec.OS.Suite != "" || doc.Spec.Trust.SecureBoot != nil {
		t.Fatal("WithDefaults changed its input")
	}
	if d.OS.Suite != DefaultSuite || !*d.Trust.SecureBoot || !*d.Trust.TPM || d.Targets.Default != TargetQEMU {
		t.Fatalf("defaults not applied: %+v", d)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(examples.Local)
	f.Add(examples.Reference)
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("topology:\n  nodes:\n    - {name: a, vmid: 1e9}\n"))
	f.Add([]byte("networking:\n  planes:\n    control: {cidr: ::/0}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(data)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			return
		}
		// Everything that decodes must default and validate without panicking.
		_ = doc.Locate(Validate(WithDefaults(doc.Spec)))
	})
}

func TestParseHostileAliases(t *testing.T) {
	laughs := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i, prev := 0, "a"; i < 8; i++ {
		name := string(rune('b' + i))
		laughs += name + ": &" + name + " [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]\n"
		prev = name
	}
	for name, in := range map[string]string{
		"self reference": "os:\n  packages: &p [*p]\n",
		"billion laughs": laughs,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(in)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("want a problem, got %v", err)
			}
		})
	}
}

func TestNodeConfigStrict(t *testing.T) {
	base := string(examples.Local)
	good := base + "nodeConfig:\n  worker:\n    sysctls:\n      net.ipv4.ip_forward: \"1\"\n"
	s, err := LoadBytes([]byte(good))
	if err != nil {
		t.Fatalf("valid nodeConfig refused: %v", err)
	}
	if got := s.NodeConfig[RoleWorker].Sysctls["net.ipv4.ip_forward"]; got != "1" {
		t.Errorf("sysctl = %q, want 1", got)
	}
	bad := base + "nodeConfig:\n  worker:\n    sysctl:\n      net.ipv4.ip_forward: \"1\"\n"
	if _, err := LoadBytes([]byte(bad)); err == nil || !strings.Contains(err.Error(), "nodeConfig.worker.sysctl") {
		t.Errorf("unknown field: err = %v, want one naming nodeConfig.worker.sysctl", err)
	}
}

// destructive.destroyVMs is off unless written, and only under that name.
func TestDestroyVMsStrict(t *testing.T) {
	for _, ex := range [][]byte{examples.Local, examples.Reference} {
		s, err := LoadBytes(ex)
		if err != nil {
			t.Fatal(err)
		}
		if s.Destructive.DestroyVMs {
			t.Error("an example spec opts in to destroying VMs")
		}
	}
	doc, err := Parse([]byte("destructive:\n  destroyVMs: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !doc.Spec.Destructive.DestroyVMs || doc.Spec.Destructive.RecreateVMs {
		t.Errorf("destroyVMs: true decoded as %+v", doc.Spec.Destructive)
	}
	if doc, err := Parse([]byte("destructive: {}\n")); err != nil || doc.Spec.Destructive.DestroyVMs {
		t.Errorf("default: %+v, %v", doc, err)
	}
	for in, want := range map[string]string{
		"destructive:\n  destroyVM: true\n":        `unknown field "destroyVM"`,
		"destructive:\n  destroyVMs: everything\n": "true or false",
	} {
		_, err := Parse([]byte(in))
		var ps Problems
		if !errors.As(err, &ps) || len(ps) != 1 || !strings.HasPrefix(ps[0].Path, "destructive.destroyVM") || !strings.Contains(ps[0].Message, want) {
			t.Errorf("%q: %v, want one problem at destructive.destroyVM… saying %q", in, err, want)
		}
	}
}

// destructive.removeEtcdMembers is off unless written, and only under
// that name: removing an etcd member cannot be undone.
func TestRemoveEtcdMembersStrict(t *testing.T) {
	for _, ex := range [][]byte{examples.Local, examples.Reference, examples.LocalHA} {
		s, err := LoadBytes(ex)
		if err != nil {
			t.Fatal(err)
		}
		if s.Destructive.RemoveEtcdMembers {
			t.Error("an example spec opts in to removing etcd members")
		}
	}
	doc, err := Parse([]byte("destructive:\n  removeEtcdMembers: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := doc.Spec.Destructive; !d.RemoveEtcdMembers || d.DestroyVMs || d.RecreateVMs || d.WipeDisks {
		t.Errorf("removeEtcdMembers: true decoded as %+v", d)
	}
	for in, want := range map[string]string{
		"destructive:\n  removeEtcdMember: true\n": `unknown field "removeEtcdMember"`,
		"destructive:\n  removeEtcdMembers: yes\n": "true or false",
		"destructive:\n  removeEtcdMembers: all\n": "true or false",
	} {
		_, err := Parse([]byte(in))
		var ps Problems
		if !errors.As(err, &ps) || len(ps) != 1 || !strings.HasPrefix(ps[0].Path, "destructive.removeEtcdMember") || !strings.Contains(ps[0].Message, want) {
			t.Errorf("%q: %v, want one problem at destructive.removeEtcdMember… saying %q", in, err, want)
		}
	}
}
