package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// fakeEtcd is a member's JSON gateway: /health, member list, remove, add,
// answering only clients with a certificate of its CA.
type fakeEtcd struct {
	srv     *httptest.Server
	mu      sync.Mutex
	healthy bool
	calls   []string
	// extra is a member the add answer adds (a hostile one).
	extra *etcdAPIMember
}

func newFakeEtcd(t *testing.T, ca *pki.CA, healthy bool) *fakeEtcd {
	t.Helper()
	f := &fakeEtcd{healthy: healthy}
	members := []etcdAPIMember{
		{"11", "cp-1", []string{"https://10.50.0.11:2380"}},
		{"12", "cp-2", []string{"https://10.50.0.12:2380"}}, // the replaced machine's
		{"13", "cp-3", []string{"https://10.50.0.13:2380"}},
	}
	f.srv = mtlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		f.calls = append(f.calls, r.URL.Path+" "+strings.TrimSpace(string(body)))
		switch r.URL.Path {
		case "/health":
			if !f.healthy {
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"health":"false","reason":"RAFT NO LEADER"}`)
				return
			}
			io.WriteString(w, `{"health":"true","reason":""}`)
		case "/v3/cluster/member/list":
			_ = json.NewEncoder(w).Encode(map[string]any{"members": members})
		case "/v3/cluster/member/remove":
			var req struct{ ID string }
			_ = json.Unmarshal(body, &req)
			for i, m := range members {
				if m.ID == req.ID {
					members = append(members[:i:i], members[i+1:]...)
					break
				}
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"members": members})
		case "/v3/cluster/member/add":
			var req struct{ PeerURLs []string }
			_ = json.Unmarshal(body, &req)
			members = append(members, etcdAPIMember{"14", "", req.PeerURLs})
			if f.extra != nil {
				members = append(members, *f.extra)
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"members": members})
		default:
			http.NotFound(w, r)
		}
	}))
	return f
}

func (f *fakeEtcd) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

// etcdJoinRunner is cp-2 of local-ha with its certificates (the etcd ones
// real, of ca), the other members at cp1 and cp3.
func etcdJoinRunner(t *testing.T, ca *pki.CA, cp1, cp3 *fakeEtcd) (*kubeRunner, *kubeplan.Plan, *fakeUnits) {
	t.Helper()
	doc, err := spec.Parse(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kubeplan.For(spec.WithDefaults(doc.Spec), "cp-2")
	if err != nil {
		t.Fatal(err)
	}
	k, units, _ := newTestRunner(t, p)
	k.lanInterface = func(string) (string, error) { return "ens18", nil }
	k.etcdClientURL = func(m kubeplan.EtcdMember) string {
		return map[string]string{"cp-1": cp1.srv.URL, "cp-3": cp3.srv.URL}[m.Name]
	}
	giveCerts(t, k.root, p)
	// The real etcd-server certificate serves and authenticates as a
	// client; a client certificate stands in for it here.
	client, err := ca.IssueClient("cp-2", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pkiFile := func(name string) string { return path.Join(kubeplan.PKIDir, name) }
	writeTestFile(t, k.root, pkiFile("etcd-server.crt"), client.CertPEM)
	writeTestFile(t, k.root, pkiFile("etcd-server.key"), client.KeyPEM)
	writeTestFile(t, k.root, pkiFile("etcd-ca.crt"), ca.CertPEM())
	return k, p, units
}

func etcdEnv(t *testing.T, k *kubeRunner) string {
	t.Helper()
	b, err := os.ReadFile(k.path(kubeplan.EnvFile(kubeplan.Etcd)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Members that bootstrap together start "new" and touch no membership;
// a replaced member (the others run) removes its stale self, adds itself
// and starts "existing" with the cluster's members, once: the decision
// is kept with its data directory across restarts of kubedosd.
func TestEtcdJoin(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t, "etcd test CA")

	t.Run("bootstrap", func(t *testing.T) {
		cp1, cp3 := newFakeEtcd(t, ca, false), newFakeEtcd(t, ca, false)
		k, _, _ := etcdJoinRunner(t, ca, cp1, cp3)
		if err := k.once(ctx); err != nil {
			t.Fatal(err)
		}
		if env := etcdEnv(t, k); !strings.Contains(env, "--initial-cluster-state=new") ||
			!strings.Contains(env, "--initial-cluster=cp-1=https://10.50.0.11:2380,cp-2=https://10.50.0.12:2380,cp-3=https://10.50.0.13:2380") {
			t.Errorf("bootstrap flags:\n%s", env)
		}
		for _, c := range append(cp1.took(), cp3.took()...) {
			if !strings.HasPrefix(c, "/health") {
				t.Errorf("a bootstrapping member changed membership: %s", c)
			}
		}
	})

	t.Run("replacement", func(t *testing.T) {
		cp1, cp3 := newFakeEtcd(t, ca, true), newFakeEtcd(t, ca, true)
		k, _, units := etcdJoinRunner(t, ca, cp1, cp3)
		if err := k.once(ctx); err != nil {
			t.Fatal(err)
		}
		calls := strings.Join(cp1.took(), "\n")
		for _, want := range []string{"/v3/cluster/member/list", `/v3/cluster/member/remove {"ID":"12"}`,
			`/v3/cluster/member/add {"peerURLs":["https://10.50.0.12:2380"]}`} {
			if !strings.Contains(calls, want) {
				t.Errorf("calls lack %q:\n%s", want, calls)
			}
		}
		env := etcdEnv(t, k)
		if !strings.Contains(env, "--initial-cluster-state=existing") ||
			!strings.Contains(env, "--initial-cluster=cp-1=https://10.50.0.11:2380,cp-3=https://10.50.0.13:2380,cp-2=https://10.50.0.12:2380") {
			t.Errorf("replacement flags:\n%s", env)
		}
		if _, err := os.Stat(k.path(EtcdJoinFile)); err != nil {
			t.Errorf("no join record: %v", err)
		}
		// etcd started and wrote its data; kubedosd restarts: same flags,
		// no second add, no restart of etcd.
		if err := os.MkdirAll(k.path(etcdMemberDir), 0o700); err != nil {
			t.Fatal(err)
		}
		units.take()
		k2 := &kubeRunner{root: k.root, units: k.units, images: k.images, clock: k.clock, every: k.every, logf: k.logf,
			lanInterface: k.lanInterface, etcdClientURL: k.etcdClientURL, started: map[kubeplan.Component]string{}}
		if err := k2.once(ctx); err != nil {
			t.Fatal(err)
		}
		if got := etcdEnv(t, k2); got != env {
			t.Errorf("flags changed across a restart:\n%s\nwas\n%s", got, env)
		}
		if c := append(cp1.took(), cp3.took()...); len(c) != 0 {
			t.Errorf("asked etcd again with a data directory: %v", c)
		}
	})

	t.Run("hostile answer", func(t *testing.T) {
		// The add answer lists a peer URL that would smuggle a member into
		// etcd's command line: refused, no record, no flags.
		cp1, cp3 := newFakeEtcd(t, ca, true), newFakeEtcd(t, ca, true)
		cp1.extra = &etcdAPIMember{"15", "evil", []string{"https://10.50.0.99:2380,x=https://1.2.3.4:2380"}}
		k, _, units := etcdJoinRunner(t, ca, cp1, cp3)
		if err := k.once(ctx); err == nil || !strings.Contains(err.Error(), "peer URL") {
			t.Fatalf("a hostile member list: %v", err)
		}
		if _, err := os.Stat(k.path(EtcdJoinFile)); err == nil {
			t.Error("a join record from a hostile answer")
		}
		if _, err := os.Stat(k.path(kubeplan.EnvFile(kubeplan.Etcd))); err == nil {
			t.Error("etcd's flags written after a hostile answer")
		}
		if got := units.take(); len(got) != 0 {
			t.Errorf("started %v", got)
		}
	})
}

// validJoin refuses what must not reach etcd's command line.
func TestValidJoin(t *testing.T) {
	p := &kubeplan.Plan{Node: "cp-2"}
	ok := kubeplan.EtcdJoin{Members: []kubeplan.EtcdMember{{Name: "cp-1", PeerURL: "https://10.50.0.11:2380"}, {Name: "cp-2", PeerURL: "https://10.50.0.12:2380"}}}
	if err := validJoin(ok, p); err != nil {
		t.Fatal(err)
	}
	for name, j := range map[string]kubeplan.EtcdJoin{
		"no members":      {},
		"not among them":  {Members: ok.Members[:1]},
		"name with flags": {Members: []kubeplan.EtcdMember{{Name: "cp-1 --x", PeerURL: "https://10.50.0.11:2380"}, ok.Members[1]}},
		"plain http":      {Members: []kubeplan.EtcdMember{{Name: "cp-1", PeerURL: "http://10.50.0.11:2380"}, ok.Members[1]}},
		"url with more":   {Members: []kubeplan.EtcdMember{{Name: "cp-1", PeerURL: "https://10.50.0.11:2380,evil=https://1.2.3.4:2380"}, ok.Members[1]}},
	} {
		if err := validJoin(j, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A stacked API server's first start waits for its etcd member to be
// healthy; once started it is not held back when the member falters.
func TestAPIServerWaitsForEtcd(t *testing.T) {
	ctx := context.Background()
	k, units, _ := newTestRunner(t, kubeTestPlan(t, "cp-1"))
	giveCerts(t, k.root, kubeTestPlan(t, "cp-1"))
	healthy := errors.New("no leader")
	k.etcdGate = func(context.Context) error { return healthy }
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	got := units.take()
	if slices.Contains(got, "start kube-apiserver.service") || !slices.Contains(got, "start kubedos-etcd.service") {
		t.Fatalf("with etcd unhealthy: %v", got)
	}
	if !strings.Contains(k.State(), "kube-apiserver (its etcd member is not healthy yet: no leader)") {
		t.Errorf("state %q", k.State())
	}
	healthy = nil
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Contains(got, "start kube-apiserver.service") {
		t.Fatalf("with etcd healthy: %v", got)
	}
	healthy = errors.New("no leader")
	units.active["kube-apiserver.service"] = false // stopped by failure: started again
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Contains(got, "start kube-apiserver.service") {
		t.Errorf("a started API server was held back by its member: %v", got)
	}
}

// On an HA cluster only the first control plane's API server starts as
// soon as its etcd member is healthy; the others' first start waits for
// the cluster's API to be ready, at most apiJoinWait.
func TestAPIServerJoinsOneAtATime(t *testing.T) {
	ctx := context.Background()
	plan := func(node string) *kubeplan.Plan { return planOf(t, examples.LocalHA, node) }
	notReady := errors.New("connection refused")
	var asked int
	gate := func(context.Context, *kubeplan.Plan) error { asked++; return notReady }

	first, _, _ := newTestRunner(t, nil)
	first.etcdGate = func(context.Context) error { return nil }
	first.apiGate = gate
	if why := first.apiServerWaits(ctx, plan("cp-1"), kubeplan.APIServer); why != "" || asked != 0 {
		t.Errorf("the first control plane waits (%q) or asked (%d)", why, asked)
	}

	k, _, _ := newTestRunner(t, nil)
	clock := k.clock.(*fakeClock)
	k.etcdGate = func(context.Context) error { return nil }
	k.apiGate = gate
	cp2 := plan("cp-2")
	if why := k.apiServerWaits(ctx, cp2, kubeplan.APIServer); !strings.Contains(why, "waiting for the earlier API servers: connection refused") {
		t.Errorf("cp-2 with no API ready: %q", why)
	}
	if why := k.apiServerWaits(ctx, cp2, kubeplan.Etcd); why != "" {
		t.Errorf("etcd held back: %q", why)
	}
	clock.Advance(apiJoinWait - time.Second)
	if why := k.apiServerWaits(ctx, cp2, kubeplan.APIServer); why == "" {
		t.Error("started before the bound")
	}
	clock.Advance(time.Second)
	if why := k.apiServerWaits(ctx, cp2, kubeplan.APIServer); why != "" {
		t.Errorf("still waiting after %s: %q", apiJoinWait, why)
	}

	k3, _, _ := newTestRunner(t, nil)
	k3.etcdGate = func(context.Context) error { return nil }
	k3.apiGate = func(context.Context, *kubeplan.Plan) error { return nil }
	if why := k3.apiServerWaits(ctx, plan("cp-3"), kubeplan.APIServer); why != "" {
		t.Errorf("cp-3 with the API ready: %q", why)
	}
	k3.etcdGate = func(context.Context) error { return errors.New("no leader") }
	if why := k3.apiServerWaits(ctx, plan("cp-3"), kubeplan.APIServer); !strings.Contains(why, "etcd member is not healthy") {
		t.Errorf("cp-3 with its member unhealthy: %q", why)
	}

	// With etcd nodes of their own (the reference), the same: the first
	// control plane at once, the next after it (no local member to ask).
	refPlan := func(node string) *kubeplan.Plan { return planOf(t, examples.Reference, node) }
	asked = 0
	r1, _, _ := newTestRunner(t, nil)
	r1.apiGate = gate
	if why := r1.apiServerWaits(ctx, refPlan("cp-1"), kubeplan.APIServer); why != "" || asked != 0 {
		t.Errorf("reference: the first control plane waits (%q) or asked (%d)", why, asked)
	}
	r2, _, _ := newTestRunner(t, nil)
	r2.apiGate = gate
	if why := r2.apiServerWaits(ctx, refPlan("cp-2"), kubeplan.APIServer); !strings.Contains(why, "waiting for the earlier API servers") || asked != 1 {
		t.Errorf("reference: cp-2 with cp-1 not ready: %q (asked %d)", why, asked)
	}
	r2.apiGate = func(context.Context, *kubeplan.Plan) error { return nil }
	if why := r2.apiServerWaits(ctx, refPlan("cp-2"), kubeplan.APIServer); why != "" {
		t.Errorf("reference: cp-2 with cp-1 ready: %q", why)
	}
}

// EarlierAPIsReady asks GET /readyz of the control planes before this
// one, each verified against the Kubernetes CA for its name, without
// credentials.
func TestEarlierAPIsReady(t *testing.T) {
	ca := newTestCA(t, "kubernetes test CA")
	other := newTestCA(t, "another CA")
	var mu sync.Mutex
	status := map[string]int{}
	set := func(name string, code int) { mu.Lock(); status[name] = code; mu.Unlock() }
	// Each control plane's API server on its own loopback address, all on
	// one port (kubeRunner.apiPort stands in for 6443).
	port := "0"
	serve := func(ca *pki.CA, ip, name string) {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			t.Skipf("loopback address %s: %v", ip, err)
		}
		_, port, _ = net.SplitHostPort(l.Addr().String())
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/readyz" || r.Header.Get("Authorization") != "" || len(r.TLS.PeerCertificates) != 0 {
				http.NotFound(w, r)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			w.WriteHeader(status[name])
		}))
		srv.Listener.Close()
		srv.Listener = l
		cert, err := ca.IssueServer([]string{name}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pair, err := cert.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
	}
	serve(ca, "127.0.0.11", "cp-1")
	serve(ca, "127.0.0.12", "cp-2")
	serve(other, "127.0.0.13", "cp-3")
	k, _, _ := newTestRunner(t, nil)
	k.apiPort, _ = strconv.Atoi(port)
	member := func(name, ip string) kubeplan.EtcdMember {
		return kubeplan.EtcdMember{Name: name, PeerURL: "https://" + ip + ":2380"}
	}
	plan := func(node string) *kubeplan.Plan {
		return &kubeplan.Plan{Node: node, EtcdMembers: []kubeplan.EtcdMember{
			member("cp-1", "127.0.0.11"), member("cp-2", "127.0.0.12"), member("cp-3", "127.0.0.13"), member("cp-4", "127.0.0.14")}}
	}
	ctx := context.Background()
	set("cp-1", http.StatusOK)
	if err := k.EarlierAPIsReady(ctx, plan("cp-2")); err == nil {
		t.Error("ready without the CA")
	}
	writeTestFile(t, k.root, path.Join(kubeplan.PKIDir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}))
	if err := k.EarlierAPIsReady(ctx, plan("cp-1")); err != nil {
		t.Errorf("the first control plane asks no one: %v", err)
	}
	if err := k.EarlierAPIsReady(ctx, plan("cp-2")); err != nil {
		t.Errorf("cp-1 ready: %v", err)
	}
	set("cp-2", http.StatusInternalServerError)
	if err := k.EarlierAPIsReady(ctx, plan("cp-3")); err == nil || !strings.Contains(err.Error(), "control plane cp-2") || !strings.Contains(err.Error(), "500") {
		t.Errorf("cp-2 not ready: %v", err)
	}
	set("cp-2", http.StatusOK)
	if err := k.EarlierAPIsReady(ctx, plan("cp-3")); err != nil {
		t.Errorf("cp-1 and cp-2 ready: %v", err)
	}
	set("cp-3", http.StatusOK)
	if err := k.EarlierAPIsReady(ctx, plan("cp-4")); err == nil || !strings.Contains(err.Error(), "control plane cp-3") {
		t.Errorf("cp-3's certificate is of another CA: %v", err)
	}

	// With etcd nodes of their own, the plan's earlier control planes.
	external := &kubeplan.Plan{Node: "cp-3", ControlPlanes: []kubeplan.Backend{{Name: "cp-1", Address: "127.0.0.11"}, {Name: "cp-2", Address: "127.0.0.12"}}}
	if err := k.EarlierAPIsReady(ctx, external); err != nil {
		t.Errorf("external etcd, cp-1 and cp-2 ready: %v", err)
	}
	set("cp-2", http.StatusServiceUnavailable)
	if err := k.EarlierAPIsReady(ctx, external); err == nil || !strings.Contains(err.Error(), "control plane cp-2") {
		t.Errorf("external etcd, cp-2 not ready: %v", err)
	}
}

// The controller-manager and the scheduler start once the cluster's API
// is ready, not before (the controller-manager would exit and be started
// again every few seconds); once started they are not held back.
func TestControllersWaitForTheAPI(t *testing.T) {
	ctx := context.Background()
	p := kubeTestPlan(t, "cp-1")
	k, units, _ := newTestRunner(t, p)
	giveCerts(t, k.root, p)
	ready := errors.New("connection refused")
	var asked []string
	k.clusterAPIGate = func(_ context.Context, q *kubeplan.Plan) error { asked = append(asked, q.APIServer); return ready }
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	got := units.take()
	if slices.Contains(got, "start kube-controller-manager.service") || slices.Contains(got, "start kube-scheduler.service") ||
		!slices.Contains(got, "start kube-apiserver.service") {
		t.Fatalf("with the API not ready: %v", got)
	}
	if len(asked) == 0 || asked[0] != p.APIServer {
		t.Errorf("asked %v, want the plan's API address %s", asked, p.APIServer)
	}
	if !strings.Contains(k.State(), "kube-controller-manager (waiting for the cluster's API: connection refused)") {
		t.Errorf("state %q", k.State())
	}
	ready = nil
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	got = units.take()
	if !slices.Contains(got, "start kube-controller-manager.service") || !slices.Contains(got, "start kube-scheduler.service") {
		t.Fatalf("with the API ready: %v", got)
	}
	ready = errors.New("gone")
	units.active["kube-controller-manager.service"] = false
	if err := k.once(ctx); err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Contains(got, "start kube-controller-manager.service") {
		t.Errorf("a started controller-manager was held back: %v", got)
	}
}
