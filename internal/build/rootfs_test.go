package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCustomizeRootfsMasksLogins(t *testing.T) {
	out := debianRoot(t, "usr/lib/systemd/system/tmp.mount")
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

// debianRoot is the least of a Debian root customizeRootfs links into:
// networkd's units and tmp.mount where the suite keeps it.
func debianRoot(t *testing.T, tmpMount string) string {
	t.Helper()
	out := t.TempDir()
	files := []string{"lib/systemd/system/systemd-networkd.service", "lib/systemd/system/systemd-networkd.socket"}
	if tmpMount != "" {
		files = append(files, tmpMount)
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Join(out, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, f), []byte("[Unit]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// /tmp is a tmpfs on the read-only root whichever suite the root is:
// bookworm keeps tmp.mount in /usr/share/systemd, trixie in systemd's unit
// directory. A link to bookworm's path on trixie left /tmp on the
// read-only root, and the first upgrade of a trixie node failed to spool
// its payload (HA drill 5, 2026-12-07).
func TestCustomizeRootfsTmpOnTmpfs(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kubedosd")
	if err := os.WriteFile(bin, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ suite, tmpMount string }{
		{"bookworm", "usr/share/systemd/tmp.mount"},
		{"trixie", "usr/lib/systemd/system/tmp.mount"},
	} {
		t.Run(tc.suite, func(t *testing.T) {
			out := debianRoot(t, tc.tmpMount)
			if err := customizeRootfs(RootfsInput{Role: "worker", Kubedosd: bin, Out: out}); err != nil {
				t.Fatal(err)
			}
			for _, link := range []string{"etc/systemd/system/tmp.mount", "etc/systemd/system/local-fs.target.wants/tmp.mount"} {
				target, err := os.Readlink(filepath.Join(out, link))
				if err != nil {
					t.Fatalf("%s: %v", link, err)
				}
				if target != "/"+tc.tmpMount {
					t.Errorf("%s links to %s, want /%s", link, target, tc.tmpMount)
				}
			}
		})
	}
	t.Run("neither", func(t *testing.T) {
		err := customizeRootfs(RootfsInput{Role: "worker", Kubedosd: bin, Out: debianRoot(t, "")})
		if err == nil || !strings.Contains(err.Error(), "tmp.mount") {
			t.Fatalf("a root without tmp.mount: %v, want an error naming it", err)
		}
	})
	// Any unit link the build makes must land on a file of the root.
	t.Run("dangling", func(t *testing.T) {
		out := debianRoot(t, "usr/lib/systemd/system/tmp.mount")
		if err := os.Remove(filepath.Join(out, "lib/systemd/system/systemd-networkd.socket")); err != nil {
			t.Fatal(err)
		}
		err := customizeRootfs(RootfsInput{Role: "worker", Kubedosd: bin, Out: out})
		if err == nil || !strings.Contains(err.Error(), "systemd-networkd.socket") {
			t.Fatalf("a link to a missing unit: %v, want an error naming it", err)
		}
	})
}
