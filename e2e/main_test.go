//go:build e2e

// Package e2e drives the kubedos binary as an operator would: keys, lock,
// fetch, build, verify, then boots the images under QEMU with OVMF Secure
// Boot enforced and a swtpm TPM. It needs root, Debian's mirror for lock and
// fetch, and the tools scripts/setup.sh installs. Run with `make e2e`.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	work string // everything the run makes; removed at the end
	bin  string // kubedos, kubedosd, kubedos-init built from this tree
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: needs root (mmdebstrap --mode=root, loop-free disk images, swtpm)")
		os.Exit(1)
	}
	var err error
	work, err = os.MkdirTemp("", "kubedos-e2e-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(work, "bin")
	code := 1
	if err := buildBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	} else {
		code = m.Run()
	}
	if os.Getenv("KUBEDOS_E2E_KEEP") == "" {
		os.RemoveAll(work)
	} else {
		fmt.Fprintln(os.Stderr, "e2e: kept", work)
	}
	os.Exit(code)
}

// buildBinaries builds the three binaries the way `make build` does.
func buildBinaries() error {
	steps := [][]string{
		{"go", "build", "-trimpath", "-o", bin + "/kubedos", "../cmd/kubedos"},
		{"go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-buildid= -s -w", "-o", bin + "/", "../cmd/kubedosd", "../cmd/kubedos-init", "../cmd/kubedos-probe"},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs kubedos (optionally under a wrapper such as `unshare -n`) in dir.
func run(t *testing.T, dir string, wrapper []string, args ...string) result {
	t.Helper()
	r, err := runKubedos(context.Background(), dir, wrapper, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("$ kubedos %s (exit %d)\n%s", strings.Join(args, " "), r.code, lastLines(r.stderr, 15))
	return r
}

// runKubedos is run without a test to report to (a command run from
// another goroutine): the error is one that kept kubedos from running,
// an exit status is in the result; ctx ending kills it.
func runKubedos(ctx context.Context, dir string, wrapper []string, args ...string) (result, error) {
	argv := append(append([]string{}, wrapper...), append([]string{filepath.Join(bin, "kubedos")}, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return result{}, fmt.Errorf("run %v: %w", argv, err)
	}
	return result{out.String(), errb.String(), code}, nil
}

// must runs kubedos and fails the test unless it exits 0.
func must(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := run(t, dir, nil, args...)
	if r.code != 0 {
		t.Fatalf("kubedos %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
