package kubeplan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The live tests run the `make kube` binary (KUBEDOS_KUBE) against
// Debian's etcd on loopback ports: what a unit test of the flags cannot
// show is what this kube-apiserver does with them.

// liveBinaries is the kube binary (KUBEDOS_KUBE) and Debian's etcd, or a
// skip saying which is missing; -short skips too, saying what the test
// would start.
func liveBinaries(t *testing.T, starts string) (kube, etcd string) {
	t.Helper()
	kube = os.Getenv("KUBEDOS_KUBE")
	if kube == "" {
		t.Skip("KUBEDOS_KUBE names the binary (make kube)")
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	if testing.Short() {
		t.Skip(starts)
	}
	return kube, etcd
}

// liveAPIServer is a kube-apiserver on Debian's etcd, with an admin
// token (system:masters).
type liveAPIServer struct {
	url, admin, log string
	cmd             *exec.Cmd
	exited          <-chan struct{}
	kube            string
	ctx             context.Context
}

// startLiveAPIServer starts etcd and kube-apiserver (with extra flags)
// and waits until the kubernetes Service and kube-system exist.
func startLiveAPIServer(ctx context.Context, t *testing.T, kubeBin, etcd, dir, serviceCIDR string, extra ...string) *liveAPIServer {
	t.Helper()
	ports := freePorts(t, 3)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	startProc(ctx, t, dir, "etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer)

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	saKey := filepath.Join(dir, "sa.key")
	writeFile(t, saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, filepath.Join(dir, "tokens.csv"), []byte("admin-token,admin,1,system:masters\n"))
	a := &liveAPIServer{url: fmt.Sprintf("https://127.0.0.1:%d", ports[2]), admin: filepath.Join(dir, "admin.kubeconfig"),
		log: filepath.Join(dir, "kube-apiserver.log"), kube: kubeBin, ctx: ctx}
	a.cmd, a.exited = startProc(ctx, t, dir, "kube-apiserver", kubeBin, append([]string{"kube-apiserver",
		"--etcd-servers", etcdURL, "--cert-dir", filepath.Join(dir, "certs"),
		"--secure-port", fmt.Sprint(ports[2]), "--bind-address", "127.0.0.1",
		"--service-cluster-ip-range", serviceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey, "--authorization-mode", "RBAC",
		"--token-auth-file", filepath.Join(dir, "tokens.csv")}, extra...)...)
	a.kubeconfig(t, a.admin, "admin-token")
	// Up when the kubernetes Service and kube-system exist (no
	// controller-manager runs: nothing else is made for us).
	waitFor(t, 120*time.Second, "kube-apiserver with the kubernetes Service", func() error {
		if out, err := a.kubectl(nil, "get", "namespace", "kube-system"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out, err := a.kubectl(nil, "get", "-n", "default", "service", "kubernetes"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return a
}

// kubeconfig writes a kubeconfig for this server and a bearer token.
func (a *liveAPIServer) kubeconfig(t *testing.T, path, token string) {
	t.Helper()
	writeFile(t, path, fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Config","current-context":"kubedos",
"clusters":[{"name":"kubedos","cluster":{"server":%q,"insecure-skip-tls-verify":true}}],
"users":[{"name":"u","user":{"token":%q}}],
"contexts":[{"name":"kubedos","context":{"cluster":"kubedos","user":"u"}}]}`, a.url, token))
}

// kubectl runs kubectl as the admin.
func (a *liveAPIServer) kubectl(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(a.ctx, a.kube, append([]string{"kubectl", "--kubeconfig", a.admin}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.CombinedOutput()
}

// startProc starts a process logging to dir/name.log; the channel closes
// when it has exited. The test's end kills it and, on failure, shows the
// log's tail.
func startProc(ctx context.Context, t *testing.T, dir, name, bin string, args ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log (last 3 KB):\n%s", name, b[max(0, len(b)-3000):])
		}
	})
	return cmd, done
}

// TestAPIServerStopsWithWatchesOpen stops a real kube-apiserver, started
// with the plan's shutdown flag, with SIGTERM while a watch is open (on
// a node every kubelet, controller and CoreDNS holds some): it must take
// the short path, not wait for the watch's connection until its 60 s
// request timeout (what systemd waited for at every reboot and etcd
// restore). The flag is taken from the plan, so dropping it there fails
// here. The stop's duration is printed as a FIGURE (bench/apiserver-stop.sh
// compares it with the default). About 20 s.
func TestAPIServerStopsWithWatchesOpen(t *testing.T) {
	kubeBin, etcd := liveBinaries(t, "starts etcd and kube-apiserver for about 20 s")
	s := localK8s(t)
	p, err := For(s, "cp-1")
	if err != nil {
		t.Fatal(err)
	}
	var shutdown []string
	for _, a := range Args(p, APIServer) {
		if strings.HasPrefix(a, "--shutdown-") {
			shutdown = append(shutdown, a)
		}
	}
	if len(shutdown) == 0 {
		t.Fatal("the plan's kube-apiserver has no --shutdown- flag: its stop waits for open watches")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// -v=1 logs the graceful-termination events checked below.
	api := startLiveAPIServer(ctx, t, kubeBin, etcd, dir, s.Workloads.Kubernetes.ServiceCIDR, append(shutdown, "-v=1")...)

	watchLog := filepath.Join(dir, "watch.out")
	watch := exec.CommandContext(ctx, kubeBin, "kubectl", "--kubeconfig", api.admin, "get", "configmaps", "-A", "--watch")
	out, err := os.Create(watchLog)
	if err != nil {
		t.Fatal(err)
	}
	watch.Stdout, watch.Stderr = out, out
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Process.Kill(); _ = watch.Wait() }()
	// kube-system's configmaps listed: the watch that follows the list is open.
	waitFor(t, 60*time.Second, "kubectl's watch listing the configmaps", func() error {
		b, _ := os.ReadFile(watchLog)
		if !bytes.Contains(b, []byte("kube-system")) {
			return fmt.Errorf("watch output %q", b)
		}
		return nil
	})

	begin := time.Now()
	if err := api.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Past systemd's stop timeout (90 s) it would have been killed.
	select {
	case <-api.exited:
	case <-time.After(150 * time.Second):
		t.Fatalf("kube-apiserver still running %v after SIGTERM", time.Since(begin))
	}
	took := time.Since(begin)
	if code := api.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("kube-apiserver exited %d after SIGTERM, want 0", code)
	}
	t.Logf("FIGURE kube-apiserver stop with a watch open (%s): %.1f s", strings.Join(shutdown, " "), took.Seconds())
	logged, _ := os.ReadFile(api.log)
	for _, want := range []string{`shutdownTimeout="2s"`, "InFlightRequestsDrained", "apiserver is exiting"} {
		if !bytes.Contains(logged, []byte(want)) {
			t.Errorf("kube-apiserver's log lacks %q: not the short graceful stop", want)
		}
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: not within %v: %v", what, limit, err)
}
