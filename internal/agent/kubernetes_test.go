package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/firewall"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
)

type fakeUnits struct {
	mu      sync.Mutex
	active  map[string]bool
	actions []string
	asked   int // ActiveUnits calls
	// hang: a stop of this unit waits until it is killed or its ctx ends.
	hang   string
	killed chan struct{}
}

// act records what was done to u and, unless nil, whether u is active
// after it.
func (f *fakeUnits) act(what, u string, active *bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, what+" "+u)
	if active != nil {
		f.active[u] = *active
	}
	return nil
}

var unitUp, unitDown = true, false

func (f *fakeUnits) Start(_ context.Context, u string) error { return f.act("start", u, &unitUp) }
func (f *fakeUnits) Stop(ctx context.Context, u string) error {
	f.mu.Lock()
	hang, killed := f.hang == u, f.killed
	f.mu.Unlock()
	if hang && killed != nil {
		select {
		case <-killed:
		case <-ctx.Done():
			f.act("stop (gave up)", u, nil)
			return ctx.Err()
		}
	}
	return f.act("stop", u, &unitDown)
}

func (f *fakeUnits) Kill(_ context.Context, u string) error {
	f.mu.Lock()
	if f.hang == u && f.killed != nil {
		close(f.killed)
		f.killed = nil
	}
	f.mu.Unlock()
	return f.act("kill", u, nil)
}

func (f *fakeUnits) Queue(_ context.Context, u string) error   { return f.act("queue", u, &unitUp) }
func (f *fakeUnits) Restart(_ context.Context, u string) error { return f.act("restart", u, &unitUp) }
func (f *fakeUnits) Reload(_ context.Context, u string) error  { return f.act("reload", u, nil) }

func (f *fakeUnits) ActiveUnits(_ context.Context, units []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	out := map[string]bool{}
	for _, u := range units {
		out[u] = f.active[u]
	}
	return out, nil
}

func (f *fakeUnits) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.actions
	f.actions = nil
	return out
}

func kubeTestPlan(t *testing.T, node string) *kubeplan.Plan {
	t.Helper()
	return planOf(t, examples.LocalK8s, node)
}

// planOf is node's plan in an example spec.
func planOf(t *testing.T, example []byte, node string) *kubeplan.Plan {
	t.Helper()
	doc, err := spec.Parse(example)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kubeplan.For(spec.WithDefaults(doc.Spec), node)
	if err != nil || p == nil {
		t.Fatalf("plan for %s: %v", node, err)
	}
	return p
}

// newTestRunner is a runner over a temporary root holding plan (if any)
// and two baked image archives.
func newTestRunner(t *testing.T, plan *kubeplan.Plan) (*kubeRunner, *fakeUnits, *[]string) {
	t.Helper()
	root := t.TempDir()
	if plan != nil {
		writeTestFile(t, root, kubeplan.PlanFile, mustJSONBytes(t, plan))
	}
	for _, img := range []string{"pause.tar", "probe.tar"} {
		writeTestFile(t, root, filepath.Join(kubeplan.ImageDir, img), []byte("oci"))
	}
	units := &fakeUnits{active: map[string]bool{}}
	var imported []string
	k := &kubeRunner{root: root, units: units, clock: newFakeClock(), every: kubeEvery, logf: t.Logf,
		images: func(_ context.Context, a string) error { imported = append(imported, filepath.Base(a)); return nil }}
	return k, units, &imported
}

func writeTestFile(t *testing.T, root, p string, data []byte) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustJSONBytes(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// giveCerts writes every key and certificate the plan's components read.
func giveCerts(t *testing.T, root string, p *kubeplan.Plan) {
	t.Helper()
	for _, c := range p.Components {
		for _, f := range kubeplan.Inputs(p, c) {
			if strings.HasPrefix(f, kubeplan.PKIDir+"/") {
				writeTestFile(t, root, f, []byte("pem of "+filepath.Base(f)))
			}
		}
	}
}

func TestKubeRunnerWaitsForPlanAndCertificates(t *testing.T) {
	ctx := context.Background()
	k, units, _ := newTestRunner(t, nil)
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); len(got) != 0 || !strings.Contains(k.State(), "waiting for the hub's plan") {
		t.Fatalf("without a plan: %v, state %q", got, k.State())
	}

	p := kubeTestPlan(t, "w-1")
	k, units, imported := newTestRunner(t, p)
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	// Configuration written and images imported, but no component started
	// without its certificates.
	if got := units.take(); !slices.Equal(got, []string{"start containerd.service"}) {
		t.Fatalf("before certificates: %v", got)
	}
	if !slices.Equal(*imported, []string{"pause.tar", "probe.tar"}) {
		t.Errorf("imported %v", *imported)
	}
	if !strings.Contains(k.State(), "kubelet (no ") {
		t.Errorf("state %q does not say the kubelet waits for certificates", k.State())
	}
	env, err := os.ReadFile(filepath.Join(k.root, kubeplan.EnvFile(kubeplan.Kubelet)))
	if err != nil || !strings.Contains(string(env), "--node-ip="+p.NodeIP) {
		t.Fatalf("kubelet environment: %q %v", env, err)
	}
	if _, err := os.Stat(filepath.Join(k.root, kubeplan.CNIDir, "10-kubedos.conflist")); err != nil {
		t.Error(err)
	}

	giveCerts(t, k.root, p)
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"start kubelet.service", "start kube-proxy.service"}) {
		t.Fatalf("with certificates: %v", got)
	}
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); len(got) != 0 {
		t.Fatalf("nothing changed, yet: %v", got)
	}
	if len(*imported) != 2 {
		t.Errorf("images imported again: %v", *imported)
	}
}

func TestKubeRunnerRestartsOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	p := kubeTestPlan(t, "w-1")
	k, units, _ := newTestRunner(t, p)
	giveCerts(t, k.root, p)
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	units.take()

	// A renewed kubelet serving certificate: the kubelet restarts,
	// kube-proxy, which does not read it, does not.
	writeTestFile(t, k.root, filepath.Join(kubeplan.PKIDir, "kubelet-serving.crt"), []byte("renewed"))
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"restart kubelet.service"}) {
		t.Fatalf("after a renewal: %v", got)
	}

	// A unit that stopped is started again.
	units.active["kube-proxy.service"] = false
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"start kube-proxy.service"}) {
		t.Fatalf("after kube-proxy stopped: %v", got)
	}

	// kubedosd restarted (a new runner) finds the units running: adopted,
	// not bounced.
	k2 := &kubeRunner{root: k.root, units: units, images: k.images, clock: k.clock, every: kubeEvery, logf: t.Logf}
	if err := k2.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"start containerd.service"}) {
		t.Fatalf("a restarted kubedosd: %v", got)
	}
}

func TestKubeRunnerControlPlaneOrder(t *testing.T) {
	p := kubeTestPlan(t, "cp-1")
	k, units, imported := newTestRunner(t, p)
	giveCerts(t, k.root, p)
	if err := k.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start kubedos-etcd.service", "start kube-apiserver.service", "start kube-controller-manager.service", "start kube-scheduler.service"}
	if got := units.take(); !slices.Equal(got, want) {
		t.Fatalf("control plane: %v, want %v", got, want)
	}
	if len(*imported) != 0 {
		t.Errorf("a node without a kubelet imported images: %v", *imported)
	}
}

func TestKubeRunnerRefusesBadPlan(t *testing.T) {
	for name, raw := range map[string]string{
		"unknown field": `{"version":"v1.35.4","privileged":true}`,
		"bad version":   string(mustJSONBytes(t, func() *kubeplan.Plan { p := kubeTestPlan(t, "w-1"); p.Version = "v9.9.9"; return p }())),
		"flag smuggled": string(mustJSONBytes(t, func() *kubeplan.Plan {
			p := kubeTestPlan(t, "w-1")
			p.NodePodCIDR = "10.244.21.0/24 --allow-privileged"
			return p
		}())),
		"huge": strings.Repeat(" ", maxPlanBytes+1),
	} {
		t.Run(name, func(t *testing.T) {
			k, units, _ := newTestRunner(t, nil)
			writeTestFile(t, k.root, kubeplan.PlanFile, []byte(raw))
			err := k.once(context.Background())
			if err == nil || !strings.Contains(err.Error(), kubeplan.PlanFile) {
				t.Fatalf("bad plan: %v", err)
			}
			if got := units.take(); len(got) != 0 {
				t.Errorf("acted on a bad plan: %v", got)
			}
			if _, err := os.Stat(filepath.Join(k.root, kubeplan.EnvFile(kubeplan.Kubelet))); err == nil {
				t.Error("files written from a bad plan")
			}
		})
	}
}

func TestKubeRunnerNeedsImages(t *testing.T) {
	p := kubeTestPlan(t, "w-1")
	k, _, _ := newTestRunner(t, p)
	if err := os.RemoveAll(filepath.Join(k.root, kubeplan.ImageDir)); err != nil {
		t.Fatal(err)
	}
	if err := k.once(context.Background()); err == nil || !strings.Contains(err.Error(), "no image archives") {
		t.Fatalf("without images: %v", err)
	}
}

func lbTestPlan(t *testing.T, node string) *kubeplan.Plan {
	t.Helper()
	doc, err := spec.Parse(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kubeplan.For(spec.WithDefaults(doc.Spec), node)
	if err != nil || p == nil || p.LB == nil {
		t.Fatalf("plan for %s: %v", node, err)
	}
	return p
}

// TestKubeRunnerLoadBalancer: on a load balancer the controller opens the
// firewall for the plan, writes haproxy's and keepalived's configuration
// (keepalived on the interface holding the node's LAN address), starts
// haproxy once the Kubernetes CA is there, and reloads, never restarts,
// them when the plan changes.
func TestKubeRunnerLoadBalancer(t *testing.T) {
	ctx := context.Background()
	p := lbTestPlan(t, "lb-2")
	k, units, imported := newTestRunner(t, p)
	k.lanInterface = func(addr string) (string, error) {
		if addr != "10.10.10.52" {
			return "", fmt.Errorf("no interface holds %s", addr)
		}
		return "ens18", nil
	}
	var opened []kubeplan.Openings
	k.firewall = func(_ context.Context, o kubeplan.Openings) error {
		units.mu.Lock()
		units.actions = append(units.actions, "firewall")
		units.mu.Unlock()
		opened = append(opened, o)
		return nil
	}
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	// haproxy waits for the CA; keepalived runs (in fault, holding no VIP,
	// until haproxy does: its track script).
	if got := units.take(); !slices.Equal(got, []string{"firewall", "start keepalived.service"}) {
		t.Fatalf("before the CA: %v", got)
	}
	if !strings.Contains(k.State(), "haproxy (no ca.crt)") || len(*imported) != 0 {
		t.Errorf("state %q, imported %v", k.State(), *imported)
	}
	kc, err := os.ReadFile(filepath.Join(k.root, kubeplan.KeepalivedConfig))
	if err != nil || !strings.Contains(string(kc), "interface ens18") || !strings.Contains(string(kc), "unicast_src_ip 10.10.10.52") {
		t.Fatalf("keepalived.conf %v:\n%s", err, kc)
	}
	hc, err := os.ReadFile(filepath.Join(k.root, kubeplan.HAProxyConfig))
	if err != nil || !strings.Contains(string(hc), "server cp-3 10.10.10.33:6443") {
		t.Fatalf("haproxy.cfg %v:\n%s", err, hc)
	}
	for _, c := range kubeplan.Components {
		if _, err := os.Stat(filepath.Join(k.root, kubeplan.EnvFile(c))); err == nil {
			t.Errorf("a load balancer has %s", kubeplan.EnvFile(c))
		}
	}

	giveCerts(t, k.root, p)
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"start haproxy.service"}) {
		t.Fatalf("with the CA: %v", got)
	}
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); len(got) != 0 {
		t.Fatalf("nothing changed, yet: %v", got)
	}

	// lb-3 left the spec: the firewall no longer takes its VRRP, keepalived
	// no longer advertises to it, both reloaded. haproxy stopped meanwhile:
	// started, not reloaded.
	p.LB.Peers = []string{"10.10.10.51"}
	writeTestFile(t, k.root, kubeplan.PlanFile, mustJSONBytes(t, p))
	units.active["haproxy.service"] = false
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"firewall", "start haproxy.service", "reload keepalived.service"}) {
		t.Fatalf("after a peer left: %v", got)
	}
	if len(opened) != 2 || !slices.Equal(opened[1].LB.Peers, []string{"10.10.10.51"}) {
		t.Errorf("firewall opened for %+v", opened)
	}
	p.LB.Backends = p.LB.Backends[:2]
	writeTestFile(t, k.root, kubeplan.PlanFile, mustJSONBytes(t, p))
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"firewall", "reload haproxy.service"}) {
		t.Fatalf("after a backend left: %v", got)
	}

	// No interface holds the node's LAN address: nothing is written or started.
	k.lanInterface = func(string) (string, error) { return "", errors.New("no interface holds 10.10.10.52") }
	if err := k.once(ctx); err == nil || !strings.Contains(err.Error(), "load balancer") {
		t.Fatalf("without the LAN interface: %v", err)
	}
}

func TestWithLoadBalancer(t *testing.T) {
	p := lbTestPlan(t, "lb-1")
	b := WithLoadBalancer(Baseline("loadbalancer", nil), p.LB)
	rules, err := b.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ip saddr { 10.10.10.52, 10.10.10.53 } meta l4proto 112 accept", "ip daddr 10.10.10.100 tcp dport 6443 accept"} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
	if got := WithLoadBalancer(Baseline("worker", nil), nil); got.VRRPPeers != nil || got.Services != nil {
		t.Errorf("a node without a load balancer plan opens %+v", got)
	}

	// The node's firewall keeps the load balancer's rules across a change
	// of planes, and the planes' across a change of plan.
	var last firewall.Baseline
	fw := &nodeFirewall{role: "loadbalancer", apply: func(_ context.Context, b firewall.Baseline) error { last = b; return nil }}
	if err := fw.setOpenings(context.Background(), p.Openings()); err != nil {
		t.Fatal(err)
	}
	if err := fw.setPlanes(context.Background(), []wg.Interface{{Name: "wg-kubernetes", ListenPort: 51822}}); err != nil {
		t.Fatal(err)
	}
	if len(last.VRRPPeers) != 2 || !slices.Equal(last.Planes, []string{"wg-kubernetes"}) {
		t.Errorf("after the planes changed: %+v", last)
	}
}

// An etcd member of local-ha takes its peer port from the other members
// and its client port from the other API servers, nothing from anyone
// else; the control plane holding the VIP takes VRRP from the other two.
func TestWithOpeningsEtcd(t *testing.T) {
	doc, err := spec.Parse(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kubeplan.For(spec.WithDefaults(doc.Spec), "cp-1")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := WithOpenings(Baseline("controlplane", nil), p.Openings()).Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ip saddr { 10.50.0.12, 10.50.0.13 } tcp dport 2380 accept",
		"ip saddr { 10.50.0.10, 10.50.0.12, 10.50.0.13 } tcp dport 2379 accept",
		"ip saddr { 10.50.0.12, 10.50.0.13 } meta l4proto 112 accept", "ip daddr 10.50.0.5 tcp dport 6443 accept"} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
	if strings.Count(rules, "2379") != 1 || strings.Count(rules, "2380") != 1 {
		t.Errorf("etcd's ports open beyond their sources:\n%s", rules)
	}
}

// A node still carrying its image's hostname is named after itself before
// its components start (their leader-election identity is the hostname);
// a hostname the operator's configuration set stays.
func TestNodeHostname(t *testing.T) {
	p := kubeTestPlan(t, "cp-1")
	for _, c := range []struct{ had, want string }{
		{"kubedos-controlplane", "cp-1"},
		{"cp-1", "cp-1"},
		{"edge-rack-7", "edge-rack-7"},
		{"kubedos-worker", "kubedos-worker"}, // another role's name is not this image's
	} {
		sys := &fakeSystem{hostname: c.had}
		if err := nodeHostname(sys)(p); err != nil {
			t.Fatal(err)
		}
		if sys.hostname != c.want {
			t.Errorf("hostname %q became %q, want %q", c.had, sys.hostname, c.want)
		}
	}
	k, _, _ := newTestRunner(t, p)
	giveCerts(t, k.root, p)
	sys := &fakeSystem{hostname: "kubedos-controlplane"}
	k.nameHost = nodeHostname(sys)
	if err := k.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sys.hostname != "cp-1" {
		t.Errorf("the runner left the hostname %q", sys.hostname)
	}
}

// One systemctl run answers for every component each loop.
func TestParseActive(t *testing.T) {
	names := []string{"etcd.service", "kube-apiserver.service", "kubelet.service"}
	exit3 := errors.New("exit status 3")
	for _, c := range []struct {
		out     string
		err     error
		want    []bool
		wantErr bool
	}{
		{"active\nactive\nactive\n", nil, []bool{true, true, true}, false},
		{"active\nactivating\nfailed\n", exit3, []bool{true, false, false}, false},
		{"reloading\ninactive\nunknown\n", exit3, []bool{true, false, false}, false},
		{"", errors.New("systemctl: not found"), nil, true},
		{"active\n", nil, nil, true},
	} {
		got, err := parseActive(names, []byte(c.out), c.err)
		if (err != nil) != c.wantErr {
			t.Fatalf("%q: error %v", c.out, err)
		}
		for i, n := range names {
			if c.want != nil && got[n] != c.want[i] {
				t.Errorf("%q: %s active %v, want %v", c.out, n, got[n], c.want[i])
			}
		}
	}
}

// The controller asks systemd once a loop, not once a component.
func TestKubeRunnerAsksUnitsOnce(t *testing.T) {
	p := kubeTestPlan(t, "cp-1")
	k, units, _ := newTestRunner(t, p)
	giveCerts(t, k.root, p)
	for i := 1; i <= 3; i++ {
		if err := k.once(context.Background()); err != nil {
			t.Fatal(err)
		}
		if units.asked != i {
			t.Fatalf("loop %d: systemd asked %d times", i, units.asked)
		}
	}
	// A unit that stopped is started again from that one answer.
	units.take()
	unit := kubeplan.UnitName(p.Components[0])
	units.active[unit] = false
	if err := k.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); len(got) != 1 || got[0] != "start "+unit {
		t.Errorf("after %s stopped: %v (%s)", unit, got, k.State())
	}
}
