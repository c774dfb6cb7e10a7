package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/target"
)

// fakeHubConn answers the hub's admin and Kubernetes-certificate calls in
// process: revoke, fence and replace echo the node in its new state; Admin
// certifies the CSR with the Kubernetes CA for cp-1's API server.
type fakeHubConn struct {
	cas    *pki.KubeCAs
	refuse map[string]error // method → its refusal
	calls  []string
}

func (f *fakeHubConn) Invoke(_ context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	f.calls = append(f.calls, method[strings.LastIndex(method, "/")+1:])
	if err := f.refuse[method[strings.LastIndex(method, "/")+1:]]; err != nil {
		return err
	}
	switch r := reply.(type) {
	case *api.Node:
		state := map[string]api.NodeState{"Revoke": api.NodeRevoked, "Fence": api.NodeFenced, "Replace": api.NodeReplaced}
		*r = api.Node{Name: args.(*api.NodeRequest).Name, State: state[method[strings.LastIndex(method, "/")+1:]]}
	case *api.KubeAdminResponse:
		cert, err := f.cas.SignAdmin(args.(*api.KubeAdminRequest).CSR, "alice", time.Hour, time.Now())
		if err != nil {
			return err
		}
		*r = api.KubeAdminResponse{Certificate: cert.Raw, KubernetesCA: f.cas.Kubernetes.Certificate().Raw,
			Server: "https://10.40.0.11:6443", User: cert.Subject.CommonName, NotAfter: cert.NotAfter}
	default:
		return fmt.Errorf("fake hub: no %s", method)
	}
	return nil
}

func (f *fakeHubConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("fake hub: no streams")
}

// kubeAPI is a Kubernetes API server of the Kubernetes CA answering
// route("METHOD /path"), recording each request in order.
type kubeAPI struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []string
}

func newKubeAPI(t *testing.T, cas *pki.KubeCAs, route func(key string) (int, string)) *kubeAPI {
	t.Helper()
	k := &kubeAPI{}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		k.mu.Lock()
		k.got = append(k.got, key)
		k.mu.Unlock()
		code, body := route(key)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	is, err := cas.Kubernetes.IssueServer([]string{"10.40.0.11"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := is.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	k.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: cas.Kubernetes.Pool()}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

func (k *kubeAPI) take() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	got := k.got
	k.got = nil
	return got
}

// aim is a NodeAction.NewKube that reaches k, checking TLS for the
// address the hub named.
func (k *kubeAPI) aim(c kube.Credentials) (*kube.Client, error) {
	c.ServerName = strings.TrimSuffix(strings.TrimPrefix(c.Server, "https://"), ":6443")
	c.Server = k.srv.URL
	return kube.New(c)
}

const ok200 = `{"kind":"Status","status":"Success"}`

// The library's side of node revoke|fence|replace: the order hub → VM →
// Kubernetes; a fenced node's stopped VM in the bound; a failed VM stop
// returned with the outcome, Kubernetes done all the same; a pod the API
// will not evict reported and its Node deleted all the same; the hub's
// refusal of the node stopping everything; its refusal of a credential
// reported as Kubernetes unreachable.
func TestActOnNode(t *testing.T) {
	s, err := spec.Load("../../examples/local-k8s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cas, err := pki.InitKubeKeys(t.TempDir(), "local-k8s", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k := newKubeAPI(t, cas, func(key string) (int, string) {
		switch key {
		case "PATCH /api/v1/nodes/w-1", "DELETE /api/v1/nodes/w-1":
			return 200, ok200
		case "GET /api/v1/pods":
			return 200, `{"items":[{"metadata":{"name":"a","namespace":"default"}},{"metadata":{"name":"b","namespace":"default"}}]}`
		case "POST /api/v1/namespaces/default/pods/a/eviction":
			return 201, ok200
		case "POST /api/v1/namespaces/default/pods/b/eviction":
			return 500, `{"kind":"Status","reason":"InternalError","message":"This pod has more than one PodDisruptionBudget"}`
		}
		return 404, `{"kind":"Status","reason":"NotFound"}`
	})
	ctx := context.Background()
	now := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	evictions := []string{"PATCH /api/v1/nodes/w-1", "GET /api/v1/pods", "POST /api/v1/namespaces/default/pods/a/eviction",
		"POST /api/v1/namespaces/default/pods/b/eviction", "DELETE /api/v1/nodes/w-1"}

	// Fence with the VM stopped.
	var order []string
	hub := &fakeHubConn{cas: cas}
	stop := func(_ context.Context, name string) (target.Ensured, error) {
		order = append(order, fmt.Sprintf("stop %s after %v", name, hub.calls))
		return target.Ensured{Name: name, VMID: 121, Action: target.ActionStopped}, nil
	}
	out, err := actOnNode(ctx, hub, NodeAction{Verb: NodeFence, Name: "w-1", Reason: "drill", Spec: s, Stop: stop, NewKube: k.aim}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(order, []string{"stop w-1 after [Fence]"}) || !reflect.DeepEqual(hub.calls, []string{"Fence", "Admin"}) {
		t.Errorf("order %v, hub calls %v: want fence, stop, then the credential", order, hub.calls)
	}
	if got := k.take(); !reflect.DeepEqual(got, evictions) {
		t.Errorf("Kubernetes got %q, want %q", got, evictions)
	}
	kr := out.Kubernetes
	if out.Node.State != api.NodeFenced || out.VM == nil || kr == nil || !kr.VMStopped || kr.Unreachable != "" ||
		!kr.KubeletCertificateExpiresBy.Equal(now.Add(time.Hour)) || len(kr.Steps) != 3 {
		t.Fatalf("outcome %+v, kubernetes %+v", out, kr)
	}
	if d := kr.Steps[1]; d.OK || !strings.Contains(d.Detail, "1 pod(s) evicted, 0 skipped") ||
		!strings.Contains(d.Detail, "1 not evicted: default/b: ") || !strings.Contains(d.Detail, "more than one PodDisruptionBudget") {
		t.Errorf("drain step %+v", d)
	}
	if !kr.Steps[0].OK || !kr.Steps[2].OK {
		t.Errorf("cordon or delete failed: %+v", kr.Steps)
	}
	text := strings.Join(kr.Lines(), "\n")
	for _, want := range []string{"Kubernetes: drain w-1: FAILED: ", "Kubernetes: delete w-1: done",
		"w-1's VM is stopped: its kubelet cannot re-create the Node object; its certificate expires by 2026-12-05T23:00:00Z"} {
		if !strings.Contains(text, want) {
			t.Errorf("lines lack %q:\n%s", want, text)
		}
	}

	// The VM not stopped: an error, with the outcome and Kubernetes done.
	hub = &fakeHubConn{cas: cas}
	failing := func(context.Context, string) (target.Ensured, error) {
		return target.Ensured{}, errors.New("qemu: no monitor")
	}
	out, err = actOnNode(ctx, hub, NodeAction{Verb: NodeFence, Name: "w-1", Spec: s, Stop: failing, NewKube: k.aim}, clock)
	if err == nil || !strings.Contains(err.Error(), "fenced at the hub, but stopping the VM failed: qemu: no monitor") ||
		out.Node == nil || out.VM != nil || out.Kubernetes == nil || out.Kubernetes.VMStopped || len(k.take()) != len(evictions) {
		t.Errorf("failed stop: %v; outcome %+v", err, out)
	}

	// The hub refuses: nothing else happens.
	hub = &fakeHubConn{cas: cas, refuse: map[string]error{"Revoke": fmt.Errorf("%w: node w-1 was replaced", errdefs.ErrPrecondition)}}
	order = nil
	out, err = actOnNode(ctx, hub, NodeAction{Verb: NodeRevoke, Name: "w-1", Spec: s, Stop: stop, NewKube: k.aim}, clock)
	if !errors.Is(err, errdefs.ErrPrecondition) || out.Node != nil || len(order) != 0 || !reflect.DeepEqual(hub.calls, []string{"Revoke"}) || len(k.take()) != 0 {
		t.Errorf("hub refusal: %v, %+v, stop %v, hub calls %v", err, out, order, hub.calls)
	}

	// A client the caller holds (the drill's): used, no credential asked.
	creds, _, _, err := adminKubeCredentials(ctx, &fakeHubConn{cas: cas})
	if err != nil {
		t.Fatal(err)
	}
	held, err := k.aim(creds)
	if err != nil {
		t.Fatal(err)
	}
	hub = &fakeHubConn{cas: cas}
	out, err = actOnNode(ctx, hub, NodeAction{Verb: NodeRevoke, Name: "w-1", Spec: s, Kube: held}, clock)
	if err != nil || out.Kubernetes == nil || out.Kubernetes.Unreachable != "" || !reflect.DeepEqual(hub.calls, []string{"Revoke"}) || len(k.take()) == 0 {
		t.Errorf("with a held client: %v, %+v, hub calls %v", err, out.Kubernetes, hub.calls)
	}

	// No credential (an operator, not an admin): revoked, Kubernetes
	// unreachable, and said so.
	hub = &fakeHubConn{cas: cas, refuse: map[string]error{"Admin": fmt.Errorf("%w: operator bob may not kubernetes.admin", errdefs.ErrPermission)}}
	out, err = actOnNode(ctx, hub, NodeAction{Verb: NodeRevoke, Name: "w-1", Spec: s, NewKube: k.aim}, clock)
	if err != nil || out.Kubernetes == nil || !strings.Contains(out.Kubernetes.Unreachable, "no admin credential from the hub: ") ||
		!strings.Contains(out.Kubernetes.Unreachable, "may not kubernetes.admin") || len(out.Kubernetes.Steps) != 0 || len(k.take()) != 0 {
		t.Errorf("no credential: %v, %+v", err, out.Kubernetes)
	}
	if l := out.Kubernetes.Lines(); len(l) != 1 || !strings.Contains(l[0], "expires by 2026-12-05T23:00:00Z") ||
		!strings.Contains(l[0], "kubedos node revoke w-1 --spec SPEC again") {
		t.Errorf("lines %q", l)
	}

	// No kubelet (cp-1), no Kubernetes in the spec, no spec: nothing.
	off := *s
	off.Workloads.Kubernetes.Enabled = false
	for _, tc := range []struct {
		node string
		s    *spec.ClusterSpec
	}{{"cp-1", s}, {"w-1", &off}, {"w-1", nil}} {
		hub = &fakeHubConn{cas: cas}
		out, err = actOnNode(ctx, hub, NodeAction{Verb: NodeReplace, Name: tc.node, Spec: tc.s, NewKube: k.aim}, clock)
		if err != nil || out.Kubernetes != nil || !reflect.DeepEqual(hub.calls, []string{"Replace"}) || len(k.take()) != 0 {
			t.Errorf("%s (spec %v): %v, %+v, hub calls %v", tc.node, tc.s != nil, err, out.Kubernetes, hub.calls)
		}
	}
}
