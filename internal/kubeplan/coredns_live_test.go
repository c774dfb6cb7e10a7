package kubeplan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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
	corednsBin := os.Getenv("KUBEDOS_COREDNS")
	if corednsBin == "" {
		t.Skip("KUBEDOS_COREDNS names the binary (make coredns)")
	}
	kubeBin, etcd := liveBinaries(t, "starts etcd, kube-apiserver and CoreDNS for about 20 s")
	s := localK8s(t)
	objs, err := CoreDNSObjects(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := startLiveAPIServer(ctx, t, kubeBin, etcd, dir, s.Workloads.Kubernetes.ServiceCIDR)
	kubectl := api.kubectl
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
	api.kubeconfig(t, sakc, strings.TrimSpace(string(token)))

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
	ports := freePorts(t, 3)
	dnsPort, health, ready := ports[0], ports[1], ports[2]
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
	_, _ = startProc(ctx, t, dir, "coredns", corednsBin, "-conf", filepath.Join(dir, "Corefile"), "-dns.port", fmt.Sprint(dnsPort))
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
