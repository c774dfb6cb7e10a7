package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDecodeNodeConfig(t *testing.T) {
	good := `{
  "apiVersion": "kubedos.io/v1alpha1",
  "kind": "NodeConfig",
  "hostname": "w-1",
  "sysctls": {"net.ipv4.ip_forward": "1", "net.core.rmem_max": "4096\t87380"}
}`
	cfg, err := DecodeNodeConfig("c.json", []byte(good))
	if err != nil {
		t.Fatalf("good document: %v", err)
	}
	want := &NodeConfig{APIVersion: NodeConfigAPIVersion, Kind: NodeConfigKind, Hostname: "w-1",
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1", "net.core.rmem_max": "4096\t87380"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("decoded %+v, want %+v", cfg, want)
	}

	tests := []struct {
		name string
		doc  string
		want []string // each a line of the error, in order
	}{
		{"unknown field names it", `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig",
"hostnme":"w-1"}`, []string{`c.json:2:1: hostnme: unknown field (known: apiVersion, kind, hostname, sysctls)`}},
		{"every problem at once", `{
  "apiVersion": "v2",
  "kind": "NodeConfig",
  "hostname": "W_1",
  "extra": {"a": [1, 2]},
  "sysctls": {"net.ipv4.ip_forward": 1, "../../etc/shadow": "x", "vm.swappiness": ""},
  "kind": "NodeConfig"
}`, []string{
			`c.json:2:3: apiVersion: want "kubedos.io/v1alpha1", got "v2"`,
			`c.json:4:3: hostname: "W_1" is not a DNS label`,
			`c.json:5:3: extra: unknown field`,
			`c.json:6:15: sysctls.net.ipv4.ip_forward: want a string (write "1"), got a number`,
			`c.json:6:41: sysctls.../../etc/shadow: not a kernel parameter name`,
			`c.json:6:66: sysctls.vm.swappiness: value "" must be 1 to 4096 printable`,
			`c.json:7:3: kind: duplicate key (first at 3:3)`,
			`c.json: 7 problem(s)`,
		}},
		{"syntax error with its place", "{\n  \"kind\": \"NodeConfig\",\n  \"hostname\" \"x\"\n}", []string{`c.json:3:14: JSON syntax: `}},
		{"truncated", `{"kind":`, []string{`c.json:1:9: JSON syntax: unexpected end`}},
		{"null", `null`, []string{`c.json:1:1: the document must be a JSON object, got null`}},
		{"not an object", `["kind"]`, []string{`c.json:1:1: the document must be a JSON object, got an array`}},
		{"sysctls not an object", `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","sysctls":["a"]}`, []string{`c.json:1:57: sysctls: sysctls must be a JSON object, got an array`}},
		{"data after", `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig"} {}`, []string{`data after the document`}},
		{"duplicate sysctl", `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","sysctls":{"vm.swappiness":"1","vm.swappiness":"2"}}`, []string{`c.json:1:88: sysctls.vm.swappiness: duplicate key (first at 1:68)`}},
		{"wrong type", `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":null}`, []string{`hostname: want a string, got null`}},
		{"empty", ``, []string{`JSON syntax: unexpected end`}},
		{"too large", `{"hostname":"` + strings.Repeat("a", api.MaxConfigBytes) + `"}`, []string{`exceeds 65536`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeNodeConfig("c.json", []byte(tt.doc))
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			lines := strings.Split(err.Error(), "\n")
			for i, w := range tt.want {
				if i >= len(lines) || !strings.Contains(lines[i], w) {
					t.Errorf("line %d of\n%s\nwant %q", i, err, w)
				}
			}
		})
	}
}

func FuzzDecodeNodeConfig(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":"w-1","sysctls":{"net.ipv4.ip_forward":"1"}}`))
	f.Add([]byte(`{"kind":"NodeConfig","kind":"x","sysctls":{"a.b":1,"a.b":[{}]},"z":{"y":[1,{"x":null}]}}`))
	f.Add([]byte(`{"sysctls":"x"} trailing`))
	f.Add([]byte("{\n\"hostname\" \"x\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := DecodeNodeConfig("fuzz", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			for _, p := range ce.Problems {
				if p.Line < 0 || p.Column < 0 {
					t.Fatalf("problem at %d:%d", p.Line, p.Column)
				}
			}
			return
		}
		// What decodes renders canonically, and the canonical form decodes
		// to the same configuration.
		back, err := DecodeNodeConfig("canonical", cfg.Canonical())
		if err != nil {
			t.Fatalf("canonical form of an accepted document: %v\n%s", err, cfg.Canonical())
		}
		if !reflect.DeepEqual(normalize(cfg), normalize(back)) {
			t.Fatalf("round trip: %+v != %+v", cfg, back)
		}
	})
}

// normalize treats an empty sysctls map like none (omitempty drops it).
func normalize(c *NodeConfig) NodeConfig {
	out := *c
	if len(out.Sysctls) == 0 {
		out.Sysctls = nil
	}
	return out
}

// TestConfigApply: a dry run answers the diff and changes nothing; an apply
// stores the canonical document and sets the system; errors name fields.
func TestConfigApply(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	op := e.as("olga", pki.RoleOperator)
	file := filepath.Join(e.stateDir, ConfigFile)

	got, err := op.ConfigGet(ctx)
	if err != nil || got.Present || !strings.Contains(got.Document, `"kind": "NodeConfig"`) {
		t.Fatalf("unconfigured node: %+v, %v", got, err)
	}
	doc := `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":"w-1","sysctls":{"net.ipv4.ip_forward":"1"}}`
	dry, err := op.ConfigApply(ctx, doc, true)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || !dry.Changed || !strings.Contains(dry.Diff, `+  "hostname": "w-1",`) ||
		!strings.Contains(dry.Diff, "--- config.json (applied)") || !strings.Contains(dry.Diff, "@@ -0,0 +1,8 @@") || !strings.Contains(dry.Diff, `+    "net.ipv4.ip_forward": "1"`) {
		t.Errorf("dry run answered %+v", dry)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run wrote %s: %v", file, err)
	}
	if h, _ := e.sys.Hostname(); h != "debian" {
		t.Errorf("dry run set the hostname to %q", h)
	}
	if v, _ := e.sys.Sysctl("net.ipv4.ip_forward"); v != "0" {
		t.Errorf("dry run set ip_forward to %q", v)
	}

	applied, err := op.ConfigApply(ctx, doc, false)
	if err != nil || applied.DryRun || !applied.Changed || applied.Diff != dry.Diff || applied.SHA256 != dry.SHA256 {
		t.Fatalf("apply: %+v, %v", applied, err)
	}
	stored, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := e.sys.Hostname(); h != "w-1" {
		t.Errorf("hostname %q after apply", h)
	}
	if v, _ := e.sys.Sysctl("net.ipv4.ip_forward"); v != "1" {
		t.Errorf("ip_forward %q after apply", v)
	}
	got, err = op.ConfigGet(ctx)
	if err != nil || !got.Present || got.Document != string(stored) || got.SHA256 != applied.SHA256 {
		t.Errorf("ConfigGet after apply: %+v, %v; stored %q", got, err, stored)
	}
	again, err := op.ConfigApply(ctx, doc, true)
	if err != nil || again.Changed || again.Diff != "" {
		t.Errorf("same document again: %+v, %v; want unchanged", again, err)
	}
	d, err := op.Drift(ctx)
	if err != nil || !d.Clean {
		t.Errorf("drift after apply: %+v, %v", d, err)
	}

	// Strict decoding over the API: the field is named, nothing changes.
	_, err = op.ConfigApply(ctx, `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostnme":"w-2"}`, false)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hostnme: unknown field") || !strings.Contains(err.Error(), "config:1:") {
		t.Errorf("misspelt field: %v, want InvalidArgument naming hostnme", err)
	}
	_, err = op.ConfigApply(ctx, `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","sysctls":{"net.ipv4.tcp_wmem":"1","vm.swappiness":"10"}}`, true)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "sysctls.net.ipv4.tcp_wmem: no such kernel parameter") {
		t.Errorf("unknown kernel parameter: %v, want InvalidArgument naming it", err)
	}
	if after, _ := os.ReadFile(file); string(after) != string(stored) {
		t.Errorf("a refused document changed %s", file)
	}

	// Applied again at start, as kubedosd does.
	e.sys.with(func() { e.sys.hostname, e.sys.sysctls["net.ipv4.ip_forward"] = "debian", "0" })
	if err := e.api.ApplyStoredConfig(); err != nil {
		t.Fatal(err)
	}
	if h, _ := e.sys.Hostname(); h != "w-1" {
		t.Errorf("hostname %q after ApplyStoredConfig", h)
	}
}
