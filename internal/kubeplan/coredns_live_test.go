package kubeplan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCoreDNSAgainstAPIServer runs the CoreDNS that `make coredns` builds
// (KUBEDOS_COREDNS) with kubeplan's Corefile against a real kube-apiserver
// (KUBEDOS_KUBE, on Debian's etcd) holding kubeplan's CoreDNS objects, and
// asks it over UDP: the kubernetes Service and the kube-dns Service
// resolve to their ClusterIPs, a missing Service is NXDOMAIN, a name
// outside the cluster fails (there is no upstream). CoreDNS reads the API
// as the coredns ServiceAccount, so its ClusterRole is what lets it become
// ready: a rule missing from it fails this test. Only the Corefile's
// listening ports and the kubeconfig line (in a pod it uses the in-cluster
// configuration) are changed. About 20 s.
func TestCoreDNSAgainstAPIServer(t *testing.T) {
	corednsBin, kubeBin := os.Getenv("KUBEDOS_COREDNS"), os.Getenv("KUBEDOS_KUBE")
	if corednsBin == "" || kubeBin == "" {
		t.Skip("KUBEDOS_COREDNS and KUBEDOS_KUBE name the binaries (make coredns kube)")
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and CoreDNS for about 20 s")
	}
	s := localK8s(t)
	objs, err := CoreDNSObjects(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(name string, bin string, args ...string) {
		cmd := exec.CommandContext(ctx, bin, args...)
		log, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel()
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				t.Logf("%s log (last 3 KB):\n%s", name, b[max(0, len(b)-3000):])
			}
		})
	}
	ports := freePorts(t, 6)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	start("etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", ports[1]))

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	saKey := filepath.Join(dir, "sa.key")
	writeFile(t, saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, filepath.Join(dir, "tokens.csv"), []byte("admin-token,admin,1,system:masters\n"))
	api := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	start("kube-apiserver", kubeBin, "kube-apiserver", "--etcd-servers", etcdURL, "--cert-dir", filepath.Join(dir, "certs"),
		"--secure-port", fmt.Sprint(ports[2]), "--bind-address", "127.0.0.1",
		"--service-cluster-ip-range", s.Workloads.Kubernetes.ServiceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey, "--authorization-mode", "RBAC",
		"--token-auth-file", filepath.Join(dir, "tokens.csv"))
	kubeconfig := func(path, token string) {
		writeFile(t, path, fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Config","current-context":"kubedos",
"clusters":[{"name":"kubedos","cluster":{"server":%q,"insecure-skip-tls-verify":true}}],
"users":[{"name":"u","user":{"token":%q}}],
"contexts":[{"name":"kubedos","context":{"cluster":"kubedos","user":"u"}}]}`, api, token))
	}
	admin := filepath.Join(dir, "admin.kubeconfig")
	kubeconfig(admin, "admin-token")
	kubectl := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, kubeBin, append([]string{"kubectl", "--kubeconfig", admin}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		return cmd.CombinedOutput()
	}
	// Up when the kubernetes Service and kube-system exist (no
	// controller-manager runs: nothing else is made for us).
	waitFor(t, 120*time.Second, "kube-apiserver with the kubernetes Service", func() error {
		if out, err := kubectl(nil, "get", "namespace", "kube-system"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		out, err := kubectl(nil, "get", "-n", "default", "service", "kubernetes")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	for _, o := range objs {
		if out, err := kubectl(o.Body, "apply", "--server-side", "--field-manager", "kubedos", "-f", "-"); err != nil {
			t.Fatalf("apply %s %s: %v\n%s", o.Kind, o.Name, err, out)
		}
	}
	token, err := kubectl(nil, "create", "token", CoreDNSName, "-n", CoreDNSNamespace, "--duration", "1h")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, token)
	}
	sakc := filepath.Join(dir, "coredns.kubeconfig")
	kubeconfig(sakc, strings.TrimSpace(string(token)))

	// The Corefile from the ConfigMap as applied, with loopback ports and
	// the kubeconfig of the ServiceAccount's token.
	out, err := kubectl(nil, "get", "-n", CoreDNSNamespace, "configmap", CoreDNSName, "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var cm struct{ Data map[string]string }
	if err := json.Unmarshal(out, &cm); err != nil {
		t.Fatal(err)
	}
	dnsPort, health, ready := ports[3], ports[4], ports[5]
	corefile := strings.NewReplacer(
		fmt.Sprintf(".:%d {", CoreDNSPort), fmt.Sprintf(".:%d {", dnsPort),
		fmt.Sprintf("health :%d", CoreDNSHealthPort), fmt.Sprintf("health 127.0.0.1:%d", health),
		fmt.Sprintf("ready :%d", CoreDNSReadyPort), fmt.Sprintf("ready 127.0.0.1:%d", ready),
		"ttl 30\n", "ttl 30\n        kubeconfig "+sakc+" kubedos\n",
	).Replace(cm.Data["Corefile"])
	if corefile == cm.Data["Corefile"] || !strings.Contains(corefile, "kubeconfig") {
		t.Fatalf("Corefile not adapted:\n%s", corefile)
	}
	writeFile(t, filepath.Join(dir, "Corefile"), []byte(corefile))
	begin := time.Now()
	start("coredns", corednsBin, "-conf", filepath.Join(dir, "Corefile"), "-dns.port", fmt.Sprint(dnsPort))
	waitFor(t, 60*time.Second, "CoreDNS ready (its kubernetes plugin synced)", func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", ready))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	t.Logf("CoreDNS ready %.1fs after start", time.Since(begin).Seconds())

	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	}}
	dns, _ := ClusterDNS(s)
	first, _ := s.Workloads.Kubernetes.FirstServiceIP()
	domain := s.Workloads.Kubernetes.Domain()
	for name, want := range map[string]string{
		"kubernetes.default.svc." + domain + ".":                         first.String(),
		CoreDNSService + "." + CoreDNSNamespace + ".svc." + domain + ".": dns.String(),
	} {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := r.LookupHost(lctx, name)
		lcancel()
		if err != nil || !slices.Equal(got, []string{want}) {
			t.Errorf("%s: %v %v, want %s", name, got, err, want)
		}
	}
	for name, want := range map[string]string{
		"nothing.default.svc." + domain + ".": "no such host", // NXDOMAIN
		"example.com.":                        "server misbehaving",
	} {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := r.LookupHost(lctx, name)
		lcancel()
		var de *net.DNSError
		if err == nil || !errors.As(err, &de) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v %v, want an error with %q", name, got, err, want)
		}
	}
	// A reverse lookup of the API server's Service names it.
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	names, err := r.LookupAddr(lctx, first.String())
	lcancel()
	if err != nil || !slices.Contains(names, "kubernetes.default.svc."+domain+".") {
		t.Errorf("PTR %s: %v %v", first, names, err)
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
