package build

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCustomizeRootfsMasksLogins(t *testing.T) {
	out := t.TempDir()
	bin := filepath.Join(t.TempDir(), "kubedosd")
	if err := os.WriteFile(bin, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Debian's preset: getty@tty1 wanted by getty.target.
	wants := filepath.Join(out, "etc/systemd/system/getty.target.wants/getty@tty1.service")
	if err := os.MkdirAll(filepath.Dir(wants), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/systemd/system/getty@.service", wants); err != nil {
		t.Fatal(err)
	}
	// Debian's prometheus package enables its unit: kubedosd starts it.
	prom := filepath.Join(out, "etc/systemd/system/multi-user.target.wants/prometheus.service")
	if err := os.MkdirAll(filepath.Dir(prom), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/systemd/system/prometheus.service", prom); err != nil {
		t.Fatal(err)
	}
	if err := customizeRootfs(RootfsInput{Role: "worker", Kubedosd: bin, Out: out}); err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"getty@.service", "getty@tty1.service", "serial-getty@.service", "serial-getty@ttyS0.service", "autovt@.service", "getty-static.service"} {
		target, err := os.Readlink(filepath.Join(out, "etc/systemd/system", unit))
		if err != nil || target != "/dev/null" {
			t.Errorf("%s: links to %q (%v), want masked (/dev/null)", unit, target, err)
		}
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Error("getty.target still wants getty@tty1")
	}
	if _, err := os.Lstat(prom); err == nil {
		t.Error("prometheus.service is still enabled with Debian's configuration")
	}
	// kubedosd, which draws the console there, is still enabled.
	if target, err := os.Readlink(filepath.Join(out, "etc/systemd/system/multi-user.target.wants/kubedosd.service")); err != nil || target != "/etc/systemd/system/kubedosd.service" {
		t.Errorf("kubedosd.service: %q, %v", target, err)
	}
}
