package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps/stepstest"
	"github.com/kubedos/kubedos/internal/wg"
)

// fakeKube is a Kubernetes API server over TLS with client certificates:
// the few paths the gate reads, each answer changeable by a test.
type fakeKube struct {
	mu         sync.Mutex
	ready      bool
	nodes      map[string]bool   // name → Ready
	system     map[string]string // kube-system pod → phase
	available  int
	probePods  map[string]string // probe pod → node
	silent     map[string]bool   // probe pods that never answer
	next       int
	proxyCalls int
	coredns    int               // CoreDNS replicas available
	dnsDown    bool              // lookups from probe pods time out
	records    map[string]string // what the cluster DNS answers
	dnsBody    string            // when set, GET /dns/ answers this instead
}

func newFakeKube() *fakeKube {
	return &fakeKube{ready: true, nodes: map[string]bool{"w-1": true}, system: map[string]string{},
		available: kubeplan.ProbeReplicas, probePods: map[string]string{"probe-a": "w-1", "probe-b": "w-1"}, silent: map[string]bool{},
		coredns: kubeplan.CoreDNSReplicas, records: map[string]string{
			"kubernetes.default": "10.96.0.1", "probe.kubedos-probe.svc.cluster.local.": "10.96.0.77"}}
}

func (f *fakeKube) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "no client certificate", http.StatusUnauthorized)
		return
	}
	type cond struct{ Type, Status string }
	status := func(ok bool) string {
		if ok {
			return "True"
		}
		return "False"
	}
	list := func(items []map[string]any) { _ = json.NewEncoder(w).Encode(map[string]any{"items": items}) }
	pods := func(m map[string]string, node func(string) string, phase func(string) string) {
		var items []map[string]any
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			items = append(items, map[string]any{"metadata": map[string]any{"name": n}, "spec": map[string]any{"nodeName": node(n)},
				"status": map[string]any{"phase": phase(n), "conditions": []cond{{"Ready", status(phase(n) == "Running")}}}})
		}
		list(items)
	}
	probe := "/api/v1/namespaces/" + kubeplan.ProbeNamespace
	switch r.URL.Path {
	case "/readyz":
		if !f.ready {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "[-]etcd failed: reason withheld")
			return
		}
		fmt.Fprint(w, "ok")
	case "/api/v1/nodes":
		var items []map[string]any
		for n, ok := range f.nodes {
			items = append(items, map[string]any{"metadata": map[string]any{"name": n},
				"status": map[string]any{"conditions": []cond{{"Ready", status(ok)}}, "nodeInfo": map[string]any{"kubeletVersion": "v1.35.0"}}})
		}
		list(items)
	case "/api/v1/namespaces/kube-system/pods":
		pods(f.system, func(string) string { return "cp-1" }, func(n string) string { return f.system[n] })
	case "/apis/apps/v1/namespaces/kube-system/deployments/coredns":
		_ = json.NewEncoder(w).Encode(map[string]any{"status": map[string]any{"availableReplicas": f.coredns}})
	case probe + "/services/probe":
		_ = json.NewEncoder(w).Encode(map[string]any{"spec": map[string]any{"clusterIP": "10.96.0.77"}})
	case "/apis/apps/v1/namespaces/" + kubeplan.ProbeNamespace + "/deployments/probe":
		_ = json.NewEncoder(w).Encode(map[string]any{"status": map[string]any{"availableReplicas": f.available}})
	case probe + "/pods":
		pods(f.probePods, func(n string) string { return f.probePods[n] }, func(string) string { return "Running" })
	case probe + "/services/probe:http/proxy/":
		f.proxyCalls++
		var names []string
		for n := range f.probePods {
			if !f.silent[n] {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		if len(names) == 0 {
			http.Error(w, `{"kind":"Status","reason":"ServiceUnavailable","message":"no endpoints available for service \"probe:http\""}`, http.StatusServiceUnavailable)
			return
		}
		n := names[f.next%len(names)]
		f.next++
		_ = json.NewEncoder(w).Encode(probeAnswer{Pod: n, Node: f.probePods[n], Time: time.Now().Format(time.RFC3339)})
	default:
		name, ok := strings.CutPrefix(r.URL.Path, probe+"/services/probe:http/proxy/dns/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		if f.dnsBody != "" {
			fmt.Fprint(w, f.dnsBody)
			return
		}
		a := dnsAnswer{Pod: "probe-a", Node: "w-1", Name: name, Nameservers: []string{"10.96.0.10"}}
		switch addr := f.records[name]; {
		case f.dnsDown:
			a.Error = "lookup " + name + " on 10.96.0.10:53: read udp 10.244.1.5:41234->10.96.0.10:53: i/o timeout"
		case addr == "":
			a.Error = "lookup " + name + " on 10.96.0.10:53: no such host"
		default:
			a.Addrs = []string{addr}
		}
		_ = json.NewEncoder(w).Encode(a)
	}
}

// serveKube serves f over TLS with a throwaway CA and returns a client
// with a client certificate of that CA.
func serveKube(t *testing.T, f *fakeKube) *kube.Client {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(cn string, eku x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{eku}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	}
	srvCert, srvKey := leaf("kube-apiserver", x509.ExtKeyUsageServerAuth)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cliCert, cliKey := leaf("kubedos-admin:alice", x509.ExtKeyUsageClientAuth)
	kc, err := kube.New(kube.Credentials{Server: srv.URL, CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), Cert: cliCert, Key: cliKey})
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// acceptEnv is local-k8s on fakes: a hub with every node enrolled on its
// role's image of build b1, node APIs whose planes are up with fresh
// handshakes both ways, and a healthy Kubernetes API.
type acceptEnv struct {
	spec *spec.ClusterSpec
	e    *stepstest.Env
	kube *fakeKube
	cfg  AcceptConfig
	now  time.Time
}

func newAcceptEnv(t *testing.T) *acceptEnv {
	t.Helper()
	s, err := spec.LoadBytes(examples.LocalK8s)
	if err != nil {
		t.Fatal(err)
	}
	a := &acceptEnv{spec: s, e: stepstest.Serve(t, s, ""), kube: newFakeKube(), now: time.Now()}
	builds := map[string]string{}
	for _, n := range s.Topology.Nodes {
		builds[string(n.Role)] = "id-" + string(n.Role)
		a.e.Hub.SetNode(api.Node{Name: n.Name, Role: string(n.Role), State: api.NodeEnrolled, BuildID: "id-" + string(n.Role), EKHash: "ek-" + n.Name})
		a.setPlanes(n.Name, a.now.Add(-30*time.Second))
	}
	a.cfg = AcceptConfig{Spec: s, HubAddr: a.e.HubAddr, ClientTLS: a.e.ClientTLS(), Builds: builds, NodeAddrs: a.e.NodeAddrs,
		Kube: serveKube(t, a.kube), Now: func() time.Time { return a.now }, CallTimeout: 5 * time.Second}
	return a
}

// setPlanes makes node name report every plane up, with handshakes at hs
// (the master with every other node, a node with the master).
func (a *acceptEnv) setPlanes(name string, hs time.Time) {
	ps := api.Planes{Joined: a.now.Add(-time.Minute)}
	for _, p := range spec.Planes {
		st := wg.Status{Plane: string(p), Interface: wg.InterfaceName(p), Up: true}
		for _, n := range a.spec.Topology.Nodes {
			if n.Name != name && (name == "master" || n.Name == "master") {
				st.Peers = append(st.Peers, wg.PeerStatus{Name: n.Name, LatestHandshake: hs})
			}
		}
		ps.Interfaces = append(ps.Interfaces, st)
	}
	a.e.Nodes[name].SetPlanes(ps)
}

// failing is the checks that failed, as "name@node".
func failing(r *AcceptResult) []string {
	var out []string
	for _, c := range r.Failed() {
		out = append(out, c.Name+"@"+c.Node)
	}
	return out
}

func find(r *AcceptResult, name, node string) (manifest.AcceptanceCheck, bool) {
	i := slices.IndexFunc(r.Checks, func(c manifest.AcceptanceCheck) bool { return c.Name == name && c.Node == node })
	if i < 0 {
		return manifest.AcceptanceCheck{}, false
	}
	return r.Checks[i], true
}

// TestAcceptAllPass: a healthy cluster passes every check; the drill is
// not checked unless allowed.
func TestAcceptAllPass(t *testing.T) {
	ctx := context.Background()
	a := newAcceptEnv(t)
	res, err := Accept(ctx, a.cfg)
	if !errors.Is(err, ErrNotAccepted) || res.Accepted {
		t.Fatalf("accepted with the drill unchecked: %v", err)
	}
	if got := failing(res); !slices.Equal(got, []string{"drill@"}) {
		t.Errorf("failing without --allow-unchecked: %v", got)
	}
	a.cfg.AllowUnchecked = []string{"dns"}
	if _, err = Accept(ctx, a.cfg); err == nil || errors.Is(err, ErrNotAccepted) || !strings.Contains(err.Error(), `"dns"`) {
		t.Errorf("dns is checked now, --allow-unchecked dns: %v", err)
	}
	a.cfg.AllowUnchecked = []string{UncheckedDrill}
	res, err = Accept(ctx, a.cfg)
	if err != nil || !res.Accepted || !slices.Equal(res.Allowed, []string{"drill"}) {
		t.Fatalf("healthy cluster: %v, failing %v, allowed %v", err, failing(res), res.Allowed)
	}
	passed := 0
	for _, c := range res.Checks {
		if c.Outcome == CheckPassed {
			passed++
		}
	}
	// 4 attested, 4 nodes × 3 planes, API, 1 kubelet, kube-system, probe
	// deployment and service, CoreDNS, two names resolved.
	if want := 4 + 12 + 1 + 1 + 1 + 2 + 1 + 2; passed != want {
		t.Errorf("%d checks passed, want %d: %+v", passed, want, res.Checks)
	}
	if c, _ := find(res, checkProbeServed, "cp-1"); c.Outcome != CheckPassed || !strings.Contains(c.Detail, "probe-a on w-1, probe-b on w-1") {
		t.Errorf("probe service: %+v", c)
	}
	if c, _ := find(res, checkDNS, "w-1"); c.Outcome != CheckPassed ||
		c.Detail != "kubernetes.default → 10.96.0.1 from pod probe-a (nameservers 10.96.0.10)" {
		t.Errorf("cluster dns: %+v", c)
	}
	if len(res.Nodes) != 4 || res.Nodes[2] != (manifest.AcceptanceNode{Name: "w-1", Role: "worker", EKHash: "ek-w-1", BuildID: "id-worker"}) {
		t.Errorf("nodes: %+v", res.Nodes)
	}
	if res.WallTime <= 0 || res.WallTime > time.Minute {
		t.Errorf("wall time %v", res.WallTime)
	}
	a.cfg.AllowUnchecked = []string{"everything"}
	if _, err := Accept(ctx, a.cfg); err == nil || errors.Is(err, ErrNotAccepted) || !strings.Contains(err.Error(), `"everything"`) {
		t.Errorf("unknown --allow-unchecked item: %v", err)
	}
}

// TestAcceptEachCheckFails: each check fails on its own, naming the node
// and what.
func TestAcceptEachCheckFails(t *testing.T) {
	for _, tt := range []struct {
		name   string
		break_ func(a *acceptEnv)
		want   []string // failing checks, name@node
		detail string   // in the first failing check's detail
	}{
		{"node quarantined", func(a *acceptEnv) {
			a.e.Hub.SetNode(api.Node{Name: "cp-1", Role: "controlplane", State: api.NodeQuarantined, Reason: &api.Refusal{Check: "pcr", Detail: "PCR 11 differs"}})
		}, []string{"attested@cp-1"}, "quarantined, not enrolled (pcr: PCR 11 differs)"},
		{"node on another build", func(a *acceptEnv) {
			a.e.Hub.SetNode(api.Node{Name: "w-1", Role: "worker", State: api.NodeEnrolled, BuildID: "id-old"})
		}, []string{"attested@w-1"}, "runs image id-old, the build's worker image is id-worker"},
		{"node in another role", func(a *acceptEnv) {
			a.e.Hub.SetNode(api.Node{Name: "w-1", Role: "controlplane", State: api.NodeEnrolled, BuildID: "id-worker"})
		}, []string{"attested@w-1"}, "enrolled as controlplane, the spec says worker"},
		{"stale handshake on a node", func(a *acceptEnv) { a.setPlanes("w-1", a.now.Add(-5*time.Minute)) },
			[]string{"plane control@w-1", "plane observability@w-1", "plane kubernetes@w-1"}, "last handshake with master on wg-control was 5m0s ago"},
		{"stale handshake on the master's side", func(a *acceptEnv) {
			a.setPlanes("master", a.now.Add(-10*time.Second))
			ps, _ := a.e.Nodes["master"].Planes(context.Background(), nil)
			ps.Interfaces[2].Peers[0].LatestHandshake = time.Time{}
			a.e.Nodes["master"].SetPlanes(*ps)
		}, []string{"plane kubernetes@master"}, "no handshake with cp-1 on wg-kubernetes"},
		{"plane down", func(a *acceptEnv) {
			ps, _ := a.e.Nodes["cp-1"].Planes(context.Background(), nil)
			ps.Interfaces[0].Up = false
			a.e.Nodes["cp-1"].SetPlanes(*ps)
		}, []string{"plane control@cp-1"}, "wg-control (control) is down"},
		{"API server not ready", func(a *acceptEnv) { a.kube.ready = false },
			[]string{"kubernetes api@cp-1", "kubelet ready@w-1", "kube-system pods@", "probe deployment@", "probe service@",
				"coredns deployment@", "cluster dns@"}, "kube-apiserver is not ready"},
		{"kubelet not Ready", func(a *acceptEnv) { a.kube.nodes["w-1"] = false }, []string{"kubelet ready@w-1"}, "registered, not Ready"},
		{"kubelet not registered", func(a *acceptEnv) { delete(a.kube.nodes, "w-1") }, []string{"kubelet ready@w-1"}, "not registered"},
		{"kube-system pod pending", func(a *acceptEnv) { a.kube.system["kube-proxy-x"] = "Pending" }, []string{"kube-system pods@cp-1"}, "pod kube-proxy-x is Pending"},
		{"probe not available", func(a *acceptEnv) { a.kube.available = 1 }, []string{"probe deployment@", "probe service@", "cluster dns@"}, "1 of 2 replicas available"},
		{"a probe replica silent", func(a *acceptEnv) { a.kube.silent["probe-b"] = true }, []string{"probe service@w-1"}, "1 of 2 running replicas answered through the Service in 20 tries; silent: probe-b on w-1"},
		{"no probe endpoints", func(a *acceptEnv) { a.kube.silent["probe-a"], a.kube.silent["probe-b"] = true, true },
			[]string{"probe service@w-1", "cluster dns@"}, "no endpoints available"},
		// CoreDNS down: its Deployment has no replica and a probe pod's
		// lookups time out; each failure names the name and why.
		{"CoreDNS down", func(a *acceptEnv) { a.kube.coredns, a.kube.dnsDown = 0, true },
			[]string{"coredns deployment@", "cluster dns@w-1", "cluster dns@w-1"}, "kube-system/coredns: 0 of 2 replicas available"},
		{"CoreDNS up, lookups time out", func(a *acceptEnv) { a.kube.dnsDown = true }, []string{"cluster dns@w-1", "cluster dns@w-1"},
			"kubernetes.default (the API server's Service, through the pod's search path) does not resolve from pod probe-a " +
				"(nameservers 10.96.0.10): lookup kubernetes.default on 10.96.0.10:53: read udp 10.244.1.5:41234->10.96.0.10:53: i/o timeout"},
		{"CoreDNS one replica", func(a *acceptEnv) { a.kube.coredns = 1 }, []string{"coredns deployment@"}, "1 of 2 replicas available"},
		{"the probe's Service unknown to DNS", func(a *acceptEnv) { delete(a.kube.records, "probe.kubedos-probe.svc.cluster.local.") },
			[]string{"cluster dns@w-1"}, "probe.kubedos-probe.svc.cluster.local. (the probe's Service) does not resolve from pod probe-a (nameservers 10.96.0.10): lookup probe.kubedos-probe.svc.cluster.local. on 10.96.0.10:53: no such host"},
		{"a wrong address", func(a *acceptEnv) { a.kube.records["kubernetes.default"] = "10.96.0.2" },
			[]string{"cluster dns@w-1"}, "kubernetes.default (the API server's Service, through the pod's search path) resolves to [10.96.0.2] from pod probe-a (nameservers 10.96.0.10), want 10.96.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newAcceptEnv(t)
			a.cfg.AllowUnchecked = []string{UncheckedDrill}
			tt.break_(a)
			res, err := Accept(context.Background(), a.cfg)
			if !errors.Is(err, ErrNotAccepted) || res.Accepted {
				t.Fatalf("accepted: %v", err)
			}
			got := failing(res)
			if !slices.Equal(got, tt.want) {
				t.Errorf("failing %v, want %v", got, tt.want)
			}
			if f := res.Failed(); len(f) == 0 || !strings.Contains(f[0].Detail, tt.detail) {
				t.Errorf("detail %+v, want %q", f, tt.detail)
			}
		})
	}
}

// TestAcceptNoBuild: without a build the images are not checked, which
// fails the gate unless allowed.
func TestAcceptNoBuild(t *testing.T) {
	a := newAcceptEnv(t)
	a.cfg.Builds = nil
	a.cfg.AllowUnchecked = []string{UncheckedDrill}
	res, err := Accept(context.Background(), a.cfg)
	if !errors.Is(err, ErrNotAccepted) || !slices.Equal(failing(res), []string{"build@"}) {
		t.Errorf("no build: %v %v", failing(res), err)
	}
	a.cfg.AllowUnchecked = append(a.cfg.AllowUnchecked, UncheckedBuild)
	if _, err := Accept(context.Background(), a.cfg); err != nil {
		t.Errorf("no build, allowed: %v", err)
	}
}

// TestAcceptBoundsDetails: what the API server says is bounded before it
// is reported or recorded.
func TestAcceptBoundsDetails(t *testing.T) {
	a := newAcceptEnv(t)
	a.kube.system[strings.Repeat("p", 5000)] = "Pending"
	res, _ := Accept(context.Background(), a.cfg)
	c, ok := find(res, checkKubeSystem, "cp-1")
	if !ok || c.Outcome != CheckFailed || len(c.Detail) > maxDetail+len("…") || !strings.HasPrefix(c.Detail, "pod ppp") {
		t.Errorf("kube-system check %q (%d bytes)", c.Detail[:min(len(c.Detail), 40)], len(c.Detail))
	}
}

// TestAcceptBoundsDNSAnswers: a probe pod's answer (any pod in the probe's
// namespace can answer through its Service) is bounded before it is
// reported: its node, pod, error and address list.
func TestAcceptBoundsDNSAnswers(t *testing.T) {
	a := newAcceptEnv(t)
	addrs := make([]string, 10000)
	for i := range addrs {
		addrs[i] = strings.Repeat("9", 300)
	}
	body, _ := json.Marshal(map[string]any{"pod": strings.Repeat("p", 5000), "node": strings.Repeat("n", 5000),
		"name": "kubernetes.default", "addrs": addrs, "nameservers": addrs})
	a.kube.dnsBody = string(body)
	a.cfg.AllowUnchecked = []string{UncheckedDrill}
	res, _ := Accept(context.Background(), a.cfg)
	var dns []manifest.AcceptanceCheck
	for _, c := range res.Checks {
		if c.Name == checkDNS {
			dns = append(dns, c)
		}
	}
	if len(dns) != 2 {
		t.Fatalf("dns checks: %+v", dns)
	}
	for _, c := range dns {
		if c.Outcome != CheckFailed || len(c.Node) > 260 || len(c.Detail) > maxDetail+len("…") {
			t.Errorf("unbounded: node %d bytes, detail %d bytes", len(c.Node), len(c.Detail))
		}
	}
	if !strings.HasPrefix(dns[0].Detail, "kubernetes.default (the API server's Service, through the pod's search path) resolves to [999") ||
		!strings.Contains(dns[1].Detail, `answered for "kubernetes.default"`) {
		t.Errorf("details: %.300s / %.300s", dns[0].Detail, dns[1].Detail)
	}
}
