package cli

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
)

// fakeKube is a Kubernetes API server with a certificate of the cluster's
// Kubernetes CA for cp-1's address (where the hub's admin credential
// names the API server), requiring a client certificate of that CA. It
// records every request, in order, as "METHOD path" and who sent it.
type fakeKube struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []string
	users []string
}

func newFakeKube(t *testing.T, cas *pki.KubeCAs) *fakeKube {
	t.Helper()
	f := &fakeKube{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.got = append(f.got, key)
		f.users = append(f.users, r.TLS.PeerCertificates[0].Subject.CommonName)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case key == "PATCH /api/v1/nodes/w-1" && string(body) == `{"spec":{"unschedulable":true}}`:
			io.WriteString(w, `{"kind":"Node"}`)
		case key == "GET /api/v1/pods" && r.URL.Query().Get("fieldSelector") == "spec.nodeName=w-1":
			io.WriteString(w, `{"items":[
 {"metadata":{"name":"probe-7d4","namespace":"probe","ownerReferences":[{"kind":"ReplicaSet","name":"probe-7d","controller":true}]}},
 {"metadata":{"name":"kube-proxy-w1","namespace":"kube-system","ownerReferences":[{"kind":"DaemonSet","name":"kube-proxy","controller":true}]}}]}`)
		case key == "POST /api/v1/namespaces/probe/pods/probe-7d4/eviction" && strings.Contains(string(body), `"kind":"Eviction"`):
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"kind":"Status","status":"Success"}`)
		case key == "DELETE /api/v1/nodes/w-1":
			io.WriteString(w, `{"kind":"Status","status":"Success"}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"kind":"Status","reason":"BadRequest","message":"the fake does not expect this"}`)
		}
	}))
	srvCert, err := cas.Kubernetes.IssueServer([]string{"10.40.0.11"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := srvCert.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: cas.Kubernetes.Pool()}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKube) take() (got, users []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, users, f.got, f.users = f.got, f.users, nil, nil
	return got, users
}

// aimKube points the node commands' Kubernetes client at server (TLS
// still checked for the address the hub named), recording that address.
func aimKube(t *testing.T, server string, named *string) {
	t.Helper()
	newKubeClient = func(c kube.Credentials) (*kube.Client, error) {
		*named = c.Server
		c.ServerName = strings.TrimSuffix(strings.TrimPrefix(c.Server, "https://"), ":6443")
		c.Server = server
		return kube.New(c)
	}
	t.Cleanup(func() { newKubeClient = nil })
}

type actedJSON struct {
	Name       string
	State      string
	VM         *struct{ Name string }
	Kubernetes *struct {
		Node, Server, Unreachable   string
		KubeletCertificateExpiresBy time.Time
		VMStopped                   bool
		Steps                       []struct {
			Step    string
			OK      bool
			Detail  string
			Drained *kube.Drained
		}
	}
}

// node revoke --spec on a worker of a Kubernetes cluster, against a real
// hub: revoked at the hub, then, with an admin credential the hub issued
// (audited), cordoned, its pod evicted (its DaemonSet pod skipped) and its
// Node object deleted, in that order, each step and the kubelet
// certificate's bound in the output. The control-plane node, which runs no
// kubelet, and a command without --spec touch no Kubernetes. An API server
// that does not answer leaves the revocation standing and says so.
func TestNodeRevokeTakesNodeOutOfKubernetes(t *testing.T) {
	dir := t.TempDir()
	specFile := filepath.Join(dir, "local-k8s.yaml")
	if err := os.WriteFile(specFile, examples.LocalK8s, 0o644); err != nil {
		t.Fatal(err)
	}
	addr, ca, cas, st := kubeHub(t, specFile)
	for i, n := range []string{"cp-1", "w-1"} {
		if err := st.RegisterEK("test", n, strings.Repeat(string(rune('a'+i)), 64), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	admin := pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	f := newFakeKube(t, cas)
	var named string
	aimKube(t, f.srv.URL, &named)
	common := []string{"--spec", specFile, "--hub", addr, "--keys", admin, "--reason", "drill"}

	start := time.Now()
	code, stdout, stderr := run(t, append([]string{"node", "revoke", "w-1", "-o", "json"}, common...)...)
	if code != 0 {
		t.Fatalf("revoke w-1: exit %d: %s", code, stderr)
	}
	var got actedJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output %q: %v", stdout, err)
	}
	if got.Name != "w-1" || got.State != "revoked" || got.VM != nil || got.Kubernetes == nil {
		t.Fatalf("output %s", stdout)
	}
	k := got.Kubernetes
	if k.Node != "w-1" || k.Server != "https://10.40.0.11:6443" || named != k.Server || k.Unreachable != "" || k.VMStopped {
		t.Errorf("kubernetes %+v (client aimed at %s)", k, named)
	}
	if by := k.KubeletCertificateExpiresBy; by.Before(start.Add(time.Hour-time.Second)) || by.After(time.Now().Add(time.Hour+time.Second)) {
		t.Errorf("kubelet certificate bound %v, want an hour from now", by)
	}
	var steps []string
	for _, s := range k.Steps {
		steps = append(steps, s.Step)
		if !s.OK {
			t.Errorf("step %+v failed", s)
		}
	}
	if !reflect.DeepEqual(steps, []string{"cordon", "drain", "delete"}) {
		t.Errorf("steps %v", steps)
	}
	if d := k.Steps[1].Drained; d == nil || !reflect.DeepEqual(d.Evicted, []string{"probe/probe-7d4"}) ||
		!reflect.DeepEqual(d.Skipped, []string{"kube-system/kube-proxy-w1 (DaemonSet pod)"}) {
		t.Errorf("drained %+v", d)
	}
	reqs, users := f.take()
	want := []string{"PATCH /api/v1/nodes/w-1", "GET /api/v1/pods", "POST /api/v1/namespaces/probe/pods/probe-7d4/eviction", "DELETE /api/v1/nodes/w-1"}
	if !reflect.DeepEqual(reqs, want) {
		t.Errorf("Kubernetes got %q, want %q", reqs, want)
	}
	for _, u := range users {
		if u != "kubedos-admin:admin" {
			t.Errorf("request by %q, want the hub's admin credential", u)
		}
	}
	es, err := st.Audit(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(es); n < 2 || es[n-2].Action != "node.revoke" || es[n-2].Target != "w-1" || es[n-1].Action != "kubernetes.admin" || es[n-1].Outcome != hub.OutcomeOK {
		t.Errorf("audit ends %+v; want the revocation, then the admin credential", es[max(0, len(es)-2):])
	}

	// Again, as text: the hub's part is idempotent, the Kubernetes steps
	// are taken again and each is printed with the bound.
	code, stdout, stderr = run(t, append([]string{"node", "revoke", "w-1"}, common...)...)
	for _, line := range []string{"state:    revoked", "Kubernetes: cordon w-1: done: unschedulable",
		"Kubernetes: drain w-1: done: 1 pod(s) evicted, 1 skipped (DaemonSet or mirror)", "Kubernetes: delete w-1: done: Node object deleted",
		"Kubernetes: until " + k.KubeletCertificateExpiresBy.UTC().Format(time.RFC3339)[:13], "could re-create its Node object"} {
		if code != 0 || !strings.Contains(stdout, line) {
			t.Errorf("text output lacks %q: exit %d\n%s%s", line, code, stdout, stderr)
		}
	}
	if reqs, _ := f.take(); len(reqs) != 4 {
		t.Errorf("a second revoke sent %q", reqs)
	}

	// No kubelet on cp-1, and no spec: no Kubernetes.
	for _, args := range [][]string{
		append([]string{"node", "fence", "cp-1", "-o", "json", "--state", filepath.Join(dir, "state")}, common...),
		{"node", "revoke", "w-1", "--hub", addr, "--keys", admin, "-o", "json"},
	} {
		code, stdout, stderr = run(t, args...)
		if code != 0 || strings.Contains(stdout, `"kubernetes"`) {
			t.Errorf("%s %s: exit %d, %s%s", args[1], args[2], code, stdout, stderr)
		}
		if reqs, _ := f.take(); len(reqs) != 0 {
			t.Errorf("%s %s sent %q to Kubernetes", args[1], args[2], reqs)
		}
	}

	// Kubernetes not answering: revoked all the same, and said so.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + lis.Addr().String()
	lis.Close()
	aimKube(t, closed, &named)
	code, stdout, stderr = run(t, "node", "replace", "w-1", "--spec", specFile, "--hub", addr, "--keys", admin)
	if code != 0 || !strings.Contains(stdout, "state:    replaced") || !strings.Contains(stdout, "Kubernetes: unreachable: ") ||
		!strings.Contains(stdout, "connection refused") || !strings.Contains(stdout, "the node's kubelet certificate expires by ") ||
		!strings.Contains(stdout, "the hub's refusal is what protects the cluster") || !strings.Contains(stdout, "kubectl delete node w-1") {
		t.Errorf("replace with Kubernetes down: exit %d\n%s%s", code, stdout, stderr)
	}
	if n, err := st.Node("w-1"); err != nil || n.State != hub.StateReplaced {
		t.Errorf("w-1 at the hub: %v, %v", n.State, err)
	}
}
