package sign

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The key ceremony makes three RSA keys; tests share one run of it.
var (
	sharedOnce sync.Once
	sharedKS   *KeySet
	sharedErr  error
	sharedRoot string
)

// ceremonyTime is fixed so .auth payloads can be compared with efitools'.
var ceremonyTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedRoot != "" {
		os.RemoveAll(sharedRoot)
	}
	os.Exit(code)
}

func sharedKeys(t testing.TB) *KeySet {
	t.Helper()
	sharedOnce.Do(func() {
		sharedRoot, sharedErr = os.MkdirTemp("", "kubedos-sign-test-")
		if sharedErr != nil {
			return
		}
		sharedKS, sharedErr = InitKeys(context.Background(), filepath.Join(sharedRoot, "keys"),
			InitOptions{Cluster: "test", Now: ceremonyTime})
	})
	if sharedErr != nil {
		t.Fatalf("shared key ceremony: %v", sharedErr)
	}
	return sharedKS
}

// needTool skips a test whose independent oracle is not installed; the
// oracles come from Debian packages sbsigntool, efitools, osslsigncode and
// openssl.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, needTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// runFails runs a tool that must reject its input.
func runFails(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, needTool(t, name), args...).CombinedOutput()
	if err == nil {
		t.Errorf("%s %v accepted what it should reject:\n%s", name, args, out)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(fmt.Errorf("unexpected: %w", err))
		}
		return v
	}
}
