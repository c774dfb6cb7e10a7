package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codeLoadingSysctls are kernel parameters that run a program or load code
// when set: an operator who could set one would be root (issue 14, hole 1).
var codeLoadingSysctls = map[string]string{
	"kernel.core_pattern":               "|/bin/sh -c 'cp /state/ca.key /tmp'",
	"kernel.modprobe":                   "/var/lib/kubedos/evil",
	"kernel.usermodehelper.bset":        "4294967295 4294967295",
	"kernel.usermodehelper.inheritable": "4294967295 4294967295",
	"kernel.poweroff_cmd":               "/var/lib/kubedos/evil",
	"kernel.hotplug":                    "/var/lib/kubedos/evil",
	"fs.binfmt_misc.register":           ":x:E::x::/var/lib/kubedos/evil:",
	"fs.binfmt_misc.status":             "1",
	"kernel.kexec_load_disabled":        "0",
	"kernel.unprivileged_bpf_disabled":  "0",
	"kernel.modules_disabled":           "0",
	"net.core.bpf_jit_enable":           "1",
	"kernel.yama.ptrace_scope":          "0",
	"fs.suid_dumpable":                  "2",
}

// TestConfigApplyRefusesCodeLoadingSysctls performs the attack: an operator
// sets kernel.core_pattern (and the like) through ConfigApply. Each is
// refused with PermissionDenied naming the key; nothing is written to the
// kernel or to the stored configuration, dry run or not.
func TestConfigApplyRefusesCodeLoadingSysctls(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	op := e.as("olga", pki.RoleOperator)
	e.sys.with(func() {
		for k := range codeLoadingSysctls {
			e.sys.sysctls[k] = "original"
		}
	})
	for key, value := range codeLoadingSysctls {
		for _, dry := range []bool{true, false} {
			doc := `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","sysctls":{"` + key + `":` + quoteJSON(value) + `}}`
			_, err := op.ConfigApply(ctx, doc, dry)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "sysctls."+key) {
				t.Errorf("ConfigApply %s (dry run %v): %v, want PermissionDenied naming it", key, dry, err)
			}
		}
		if v, _ := e.sys.Sysctl(key); v != "original" {
			t.Errorf("%s was set to %q", key, v)
		}
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, ConfigFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused document was stored: %v", err)
	}
}

// TestStoredConfigWithForbiddenSysctl: a document planted on the state
// partition (or stored before the allow-list) is not applied at start.
func TestStoredConfigWithForbiddenSysctl(t *testing.T) {
	e := newNodeEnv(t)
	e.sys.with(func() { e.sys.sysctls["kernel.core_pattern"] = "core" })
	doc := `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","sysctls":{"kernel.core_pattern":"|/bin/sh","net.ipv4.ip_forward":"1"}}`
	if err := os.WriteFile(filepath.Join(e.stateDir, ConfigFile), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	err := e.api.ApplyStoredConfig()
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "kernel.core_pattern") {
		t.Errorf("ApplyStoredConfig: %v, want a refusal naming kernel.core_pattern", err)
	}
	if v, _ := e.sys.Sysctl("kernel.core_pattern"); v != "core" {
		t.Errorf("kernel.core_pattern set to %q at start", v)
	}
}

// TestSysctlNotAllowed: a key outside the allow-list is refused by name,
// both when decoding and by the host's writer itself.
func TestSysctlNotAllowed(t *testing.T) {
	for _, key := range []string{"kernel.randomize_va_space", "vm.mmap_min_addr", "net.ipv4.conf.all.accept_source_route", "dev.tty.ldisc_autoload"} {
		_, err := DecodeNodeConfig("c.json", []byte(`{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","sysctls":{"`+key+`":"1"}}`))
		if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "sysctls."+key+": not on the allow-list") {
			t.Errorf("decode %s: %v, want a refusal naming it", key, err)
		}
	}
	h := &HostSystem{SysctlDir: t.TempDir()}
	p := filepath.Join(h.SysctlDir, "kernel", "core_pattern")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("core\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.SetSysctl("kernel.core_pattern", "|/bin/sh"); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("HostSystem.SetSysctl(kernel.core_pattern): %v, want ErrPermission", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "core\n" {
		t.Errorf("core_pattern written: %q", b)
	}
}

func quoteJSON(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestAllowListConsistent: every allow-list entry is settable (no entry
// hides behind a never-settable one) and has a reason.
func TestAllowListConsistent(t *testing.T) {
	for _, a := range allowedSysctls {
		key := strings.ReplaceAll(a.key, "*", "eth0")
		if why := sysctlRefusal(key); why != "" || a.reason == "" || !sysctlKey.MatchString(key) {
			t.Errorf("allow-list entry %s: refusal %q, reason %q", a.key, why, a.reason)
		}
	}
	for k := range codeLoadingSysctls {
		if sysctlRefusal(k) == "" {
			t.Errorf("%s settable", k)
		}
	}
}
