//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// TestKubernetes brings examples/local-k8s.yaml up (a master, a control
// plane node with stacked etcd, a worker) with one `cluster up`: every
// node attested and enrolled, the hub's plan and certificates on the
// nodes, etcd, kube-apiserver, controller-manager and scheduler started
// by kubedosd on cp-1, containerd, the kubelet and kube-proxy on w-1, the
// probe Deployment served — convergence only ends when it is. Then, as an
// operator: an admin kubeconfig from the hub, `kubectl get nodes`, the
// probe reached through the API server from another node (pod traffic
// across wg-kubernetes), the acceptance gate, the seal with the
// replacement drill of w-1, and the audit chain showing every Kubernetes
// certificate issued to an enrolled node, none to a fenced one.
//
// It needs the Kubernetes binary (make kube): `make e2e-kube` sets
// KUBEDOS_KUBE.
func TestKubernetes(t *testing.T) {
	kubeBin := os.Getenv("KUBEDOS_KUBE")
	if kubeBin == "" {
		t.Skip("KUBEDOS_KUBE is not set: `make e2e-kube` builds the Kubernetes binary and runs this")
	}
	start := time.Now()
	// The prometheus node (mon) and its checks — the API server and
	// kubelet scraped, a drift the kubelet makes firing the alert — cost
	// CI about 10 minutes of TCG (measured 2026-12-06: TestKubernetes 1,299 s
	// with mon, 704 s without): only with KUBEDOS_E2E_OBSERVE=1 (make
	// e2e-kube-observe); otherwise local-k8s runs without mon.
	observe := os.Getenv("KUBEDOS_E2E_OBSERVE") != ""
	specFile := "../examples/local-k8s.yaml"
	if !observe {
		specFile = withoutPrometheusNode(t, specFile)
		t.Log("KUBEDOS_E2E_OBSERVE unset: local-k8s without its prometheus node (make e2e-kube-observe runs it)")
	}
	dir, b := makeSite(t, "k8s", specFile, "local-k8s", "cache", "out", "--kube", kubeBin)
	t.Logf("FIGURE local-k8s keys, lock, fetch, build (every role): %.0fs", time.Since(start).Seconds())
	t.Cleanup(func() { run(t, dir, nil, "cluster", "down", "cluster.yaml", "--purge") })

	start = time.Now()
	up := run(t, dir, nil, "cluster", "up", "cluster.yaml", "--build", b, "--keys", "keys", "--timeout", "30m")
	if up.code != 0 {
		t.Fatalf("cluster up: exit %d\n%s", up.code, up.stderr)
	}
	t.Logf("FIGURE cluster up local-k8s, converged with the probe served: %.0fs", time.Since(start).Seconds())
	// Drift first, so the alert's two minutes of pending overlap the
	// checks below (issue 17; checked before the second converge).
	restoreDrift, drifted := func() {}, time.Now()
	if observe {
		restoreDrift = makeKubeletDrift(t, dir, "10.40.0.21:7444", "w-1")
	}
	for _, l := range strings.Split(up.stderr, "\n") {
		if strings.Contains(l, "workload/kubernetes") {
			t.Logf("progress: %s", l)
		}
	}

	var kc struct{ Path, Server, User string }
	if err := json.Unmarshal([]byte(must(t, dir, "kubeconfig", "cluster.yaml", "--keys", "keys", "--out", "admin.kubeconfig", "-o", "json")), &kc); err != nil {
		t.Fatal(err)
	}
	if kc.Server != "https://10.40.0.11:6443" || !strings.HasPrefix(kc.User, "kubedos-admin:") {
		t.Errorf("kubeconfig for %s as %s", kc.Server, kc.User)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubeBin, append([]string{"kubectl", "--kubeconfig", filepath.Join(dir, "admin.kubeconfig")}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Logf("kubectl get nodes -o wide:\n%s", kubectl("get", "nodes", "-o", "wide"))
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
				NodeInfo   struct{ KubeletVersion string }
				Addresses  []struct{ Type, Address string }
			}
		}
	}
	if err := json.Unmarshal([]byte(kubectl("get", "nodes", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 1 || nodes.Items[0].Metadata.Name != "w-1" {
		t.Fatalf("nodes: %+v", nodes.Items)
	}
	n := nodes.Items[0]
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || (c.Type == "Ready" && c.Status == "True")
	}
	if !ready || n.Status.NodeInfo.KubeletVersion != "v1.35.4" {
		t.Errorf("w-1: ready %v, kubelet %s", ready, n.Status.NodeInfo.KubeletVersion)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" && a.Address != "10.89.0.21" {
			t.Errorf("w-1's InternalIP is %s, want its kubernetes-plane address 10.89.0.21", a.Address)
		}
	}
	t.Logf("kubectl get pods -A -o wide:\n%s", kubectl("get", "pods", "-A", "-o", "wide"))
	// Issue 17: kubedosd on w-1 asks the API server, as w-1's kubelet, for
	// its Node's Ready condition and reports it (the NotReady alert's input).
	var samples []struct {
		Name  string
		Value float64
	}
	var nodeReady bool
	for deadline := time.Now().Add(time.Minute); !nodeReady && time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		r := run(t, dir, nil, "node", "metrics", "--node", "10.40.0.21:7444", "--name", "w-1", "--keys", "keys", "-o", "json")
		samples = nil
		if json.Unmarshal([]byte(r.stdout), &samples) == nil {
			for _, s := range samples {
				nodeReady = nodeReady || (s.Name == "kubedos_kubernetes_node_ready" && s.Value == 1)
			}
		}
	}
	if !nodeReady {
		t.Errorf("w-1's metrics do not say its Node is Ready: %+v", samples)
	}
	// Issue 17: mon scrapes the four kubedosd, the hub, itself, etcd, and
	// with its hub-issued Kubernetes credential the API server and the
	// kubelet: nine targets, all up.
	if observe {
		checkPrometheus(t, dir, "10.40.0.30:7444", "mon", 4)
		if d, took, ok := waitProm(t, dir, "10.40.0.30:7444", "mon", 3*time.Minute, allUp(9)); !ok {
			t.Errorf("Prometheus on mon never had the API server and the kubelet up too: %q", d)
		} else {
			t.Logf("FIGURE Prometheus on mon: 9 targets up with Kubernetes %.0fs later (%s)", took.Seconds(), d)
		}
	}

	// The probe, reached from cp-1 (the API server's service proxy) on its
	// pods on w-1: pod addresses routed over wg-kubernetes through the
	// master.
	seen := map[string]bool{}
	for i := 0; i < 12 && len(seen) < 2; i++ {
		var got struct{ Pod, Node string }
		raw := kubectl("get", "--raw", "/api/v1/namespaces/kubedos-probe/services/probe:http/proxy/")
		if err := json.Unmarshal([]byte(raw), &got); err != nil || got.Node != "w-1" || got.Pod == "" {
			t.Fatalf("probe answered %q: %v", raw, err)
		}
		seen[got.Pod] = true
	}
	if len(seen) != 2 {
		t.Errorf("the probe Service reached %d pods, want both replicas: %v", len(seen), seen)
	}

	// The drift alert fires for w-1, and the drift undone clears it.
	if observe {
		if d, _, ok := waitProm(t, dir, "10.40.0.30:7444", "mon", 5*time.Minute, func(d string) bool {
			return strings.Contains(d, "KubedosDriftDetected{node=w-1}")
		}); !ok {
			t.Errorf("no KubedosDriftDetected for w-1: %q", d)
		} else {
			t.Logf("FIGURE drift made on w-1 to its alert firing: at most %.0fs (%s)", time.Since(drifted).Seconds(), d)
		}
	}
	restoreDrift()

	// A second convergence changes nothing.
	start = time.Now()
	conv := run(t, dir, nil, "converge", "cluster.yaml", "--keys", "keys", "-o", "json")
	if conv.code != 0 {
		t.Fatalf("converge: exit %d\n%s\n%s", conv.code, conv.stdout, conv.stderr)
	}
	t.Logf("FIGURE converge no-op on local-k8s: %.1fs", time.Since(start).Seconds())
	var rec struct {
		Counts struct{ Changed, Failed int }
	}
	if err := json.Unmarshal([]byte(conv.stdout), &rec); err == nil && (rec.Counts.Changed != 0 || rec.Counts.Failed != 0) {
		t.Errorf("a second converge changed %d, failed %d", rec.Counts.Changed, rec.Counts.Failed)
	}

	// The acceptance gate (the drill not asked for: allowed, so the
	// cluster is accepted "except" it; cluster DNS checked through
	// CoreDNS) and the seal.
	start = time.Now()
	acc := run(t, dir, nil, "cluster", "accept", "cluster.yaml", "--build", b, "--keys", "keys", "--allow-unchecked", "drill")
	if acc.code != 0 {
		t.Fatalf("cluster accept: exit %d\n%s\n%s", acc.code, acc.stdout, acc.stderr)
	}
	t.Logf("FIGURE cluster accept local-k8s (the whole command): %.1fs\n%s", time.Since(start).Seconds(), acc.stdout)
	if !strings.Contains(acc.stdout, "accepted except drill") || strings.Contains(acc.stdout, "dns,") {
		t.Errorf("cluster accept did not say what it accepted without:\n%s", acc.stdout)
	}
	for _, want := range []string{"coredns deployment", "cluster dns"} {
		if !regexp.MustCompile(`(?m)^\s*passed\s+` + want + `\s`).MatchString(acc.stdout) {
			t.Errorf("cluster accept: %q did not pass:\n%s", want, acc.stdout)
		}
	}
	// The seal runs the gate again, with the replacement drill on w-1
	// first: fenced (cordoned, drained, Node deleted, VM stopped),
	// replaced, destroyed, recreated with a fresh TPM, enrolled through
	// the gate, Ready, the probe available again; then every other check
	// on the cluster it left.
	start = time.Now()
	seal := run(t, dir, nil, "cluster", "seal", "cluster.yaml", "--build", b, "--keys", "keys", "--drill", "w-1", "-o", "json")
	if seal.code != 0 {
		t.Fatalf("cluster seal --drill w-1: exit %d\n%s\n%s", seal.code, seal.stdout, seal.stderr)
	}
	t.Logf("FIGURE cluster seal with the replacement drill of w-1 (the whole command): %.0fs", time.Since(start).Seconds())
	var sealed struct {
		Sealed struct{ Seq uint64 }
		Accept struct {
			Checks []struct{ Name, Node, Outcome, Detail string }
			Drill  struct {
				OldEKHash, NewEKHash string
				Steps                []struct {
					Step   string
					OK     bool
					TookNS int64
				}
				WallTimeNS int64
			}
		}
	}
	if err := json.Unmarshal([]byte(seal.stdout), &sealed); err != nil || sealed.Sealed.Seq == 0 {
		t.Fatalf("cluster seal -o json: %v\n%s", err, seal.stdout)
	}
	d := sealed.Accept.Drill
	if len(d.Steps) != 7 || d.NewEKHash == "" || d.NewEKHash == d.OldEKHash {
		t.Errorf("drill report %+v", d)
	}
	for _, s := range d.Steps {
		t.Logf("FIGURE drill step %s: %.1fs", s.Step, float64(s.TookNS)/1e9)
	}
	t.Logf("FIGURE replacement drill of w-1, fence to probe available again: %.0fs", float64(d.WallTimeNS)/1e9)
	dnsPassed := 0
	for _, c := range sealed.Accept.Checks {
		if c.Name == "drill" && (c.Outcome != "passed" || c.Node != "w-1") || c.Outcome != "passed" {
			t.Errorf("sealed check %+v", c)
		}
		if c.Name == "cluster dns" && c.Outcome == "passed" {
			dnsPassed++
		}
	}
	// Both names resolved through CoreDNS after the drill rescheduled it.
	if dnsPassed != 2 {
		t.Errorf("sealed with %d cluster dns checks passed, want 2", dnsPassed)
	}
	for _, f := range []string{"acceptance.json", "acceptance.sig"} {
		if _, err := os.Stat(filepath.Join(b, f)); err != nil {
			t.Errorf("seal wrote no %s: %v", f, err)
		}
	}

	// Every Kubernetes certificate came from the hub, to an enrolled node,
	// for its role; the admin credentials to admin operators.
	hubAddr, err := os.ReadFile(filepath.Join(dir, ".kubedos", "clusters", "local-k8s", "hub", "hub.addr"))
	if err != nil {
		t.Fatal(err)
	}
	var audit api.AuditResponse
	if err := json.Unmarshal([]byte(must(t, dir, "audit", "--hub", strings.TrimSpace(string(hubAddr)), "--keys", "keys", "-o", "json")), &audit); err != nil {
		t.Fatal(err)
	}
	if !audit.ChainOK {
		t.Error("the audit chain does not verify")
	}
	// A node holds Kubernetes certificates only between an enrollment and
	// the next fence, revocation or replacement: the drilled w-1 got none
	// from its fence until the fresh machine enrolled.
	enrolled := map[string]bool{}
	issued := map[string]int{}
	var fencedW1, reenrolledW1 bool
	for _, e := range audit.Entries {
		if e.Outcome != "ok" {
			continue
		}
		switch e.Action {
		case "enroll":
			enrolled[e.Target] = true
			reenrolledW1 = reenrolledW1 || (fencedW1 && e.Target == "w-1")
		case "node.fence", "node.revoke", "node.replace":
			enrolled[e.Target] = false
			fencedW1 = fencedW1 || e.Target == "w-1"
		case "kubernetes.issue":
			node := strings.TrimPrefix(e.Actor, "node:")
			if !enrolled[node] {
				t.Errorf("audit %d: Kubernetes certificates issued to %s while it was not enrolled (before enrolling, or fenced, revoked or replaced)", e.Seq, node)
			}
			issued[node]++
		}
	}
	if issued["cp-1"] == 0 || issued["w-1"] < 2 || issued["master"] != 0 || !fencedW1 || !reenrolledW1 {
		t.Errorf("Kubernetes issuances by node %v (w-1: once per machine at least); w-1 fenced %v, enrolled again %v", issued, fencedW1, reenrolledW1)
	}
	var sealEntry api.AuditResponse
	if err := json.Unmarshal([]byte(must(t, dir, "audit", "--hub", strings.TrimSpace(string(hubAddr)), "--keys", "keys", "-o", "json",
		"--from", fmt.Sprint(sealed.Sealed.Seq), "--limit", "1")), &sealEntry); err != nil || len(sealEntry.Entries) != 1 ||
		sealEntry.Entries[0].Action != "cluster.seal" || sealEntry.Entries[0].Outcome != "ok" || !strings.HasSuffix(sealEntry.Entries[0].Actor, "(admin)") {
		t.Errorf("audit entry %d is not an admin's cluster.seal: %+v %v", sealed.Sealed.Seq, sealEntry.Entries, err)
	}
	fmt.Fprintln(os.Stderr, "kubernetes e2e: done")
}

// makeKubeletDrift makes real drift on a kubelet node with an operator's
// powers only (no shell): the applied configuration is given
// vm.overcommit_memory=0, then the kubelet, restarted, sets it back to the
// 1 it wants (it does at every start unless protectKernelDefaults): a
// second writer fighting the applied configuration, as a hand edit would.
// `node drift` must name it. The returned func applies the original
// configuration again and checks the drift is gone.
func makeKubeletDrift(t *testing.T, dir, addr, name string) func() {
	t.Helper()
	at := []string{"--node", addr, "--name", name, "--keys", "keys"}
	var orig api.NodeConfigDoc
	if err := json.Unmarshal([]byte(must(t, dir, append([]string{"node", "config", "get", "-o", "json"}, at...)...)), &orig); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"apiVersion": "kubedos.io/v1alpha1", "kind": "NodeConfig"}
	if orig.Present {
		if err := json.Unmarshal([]byte(orig.Document), &doc); err != nil {
			t.Fatal(err)
		}
	}
	sysctls, _ := doc["sysctls"].(map[string]any)
	if sysctls == nil {
		sysctls = map[string]any{}
	}
	sysctls["vm.overcommit_memory"] = "0"
	doc["sysctls"] = sysctls
	b, _ := json.Marshal(doc)
	file := filepath.Join(dir, name+"-drift.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, dir, append([]string{"node", "config", "apply", file}, at...)...)
	must(t, dir, append([]string{"node", "restart-service", "kubelet.service"}, at...)...)
	var r result
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(3 * time.Second) {
		if r = run(t, dir, nil, append([]string{"node", "drift"}, at...)...); r.code == 1 && strings.Contains(r.stdout, "sysctl:vm.overcommit_memory") {
			break
		}
	}
	if r.code != 1 || !strings.Contains(r.stdout, "sysctl:vm.overcommit_memory") {
		t.Errorf("the kubelet's restart made no drift on %s (exit %d):\n%s%s", name, r.code, r.stdout, r.stderr)
	}
	return func() {
		t.Helper()
		prev := filepath.Join(dir, name+"-config.json")
		body := orig.Document
		if !orig.Present {
			body = `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig"}`
		}
		if err := os.WriteFile(prev, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		must(t, dir, append([]string{"node", "config", "apply", prev}, at...)...)
		if r := run(t, dir, nil, append([]string{"node", "drift"}, at...)...); r.code != 0 {
			t.Errorf("%s still drifts with its configuration restored:\n%s", name, r.stdout)
		}
	}
}

// withoutPrometheusNode writes spec without its prometheus node and with
// Prometheus off, beside the test's files, and returns its path.
func withoutPrometheusNode(t *testing.T, spec string) string {
	t.Helper()
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "role: prometheus") {
			continue
		}
		keep = append(keep, strings.Replace(l, "prometheus: true", "prometheus: false", 1))
	}
	out := filepath.Join(work, "local-k8s-without-mon.yaml")
	if err := os.WriteFile(out, []byte(strings.Join(keep, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
