package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
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

	"github.com/kubedos/kubedos/internal/errdefs"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, PEM.
type testPKI struct {
	caPEM                  []byte
	serverCert             tls.Certificate
	clientCert, clientKey  []byte
	pool                   *x509.CertPool
	otherCert, otherKeyPEM []byte // a client certificate of another CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, caKey, caPEM := selfSigned(t, "test-ca")
	p := &testPKI{caPEM: caPEM, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	srvPEM, srvKey := leaf(t, ca, caKey, "kube-apiserver", x509.ExtKeyUsageServerAuth)
	var err error
	if p.serverCert, err = tls.X509KeyPair(srvPEM, srvKey); err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey = leaf(t, ca, caKey, "kubedos-admin:alice", x509.ExtKeyUsageClientAuth)
	other, otherKey, _ := selfSigned(t, "other-ca")
	p.otherCert, p.otherKeyPEM = leaf(t, other, otherKey, "mallory", x509.ExtKeyUsageClientAuth)
	return p
}

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, eku x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{eku},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

// seen is one request the fake API server got.
type seen struct {
	method, path, query, contentType, user string
	body                                   string
}

// fakeAPI is an API server that requires a client certificate of the
// test CA and answers from routes ("METHOD /path" → status, body).
type fakeAPI struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []seen
}

type reply struct {
	code int
	body string
}

func newFakeAPI(t *testing.T, p *testPKI, routes map[string]reply) *fakeAPI {
	t.Helper()
	return newFakeAPIFunc(t, p, func(key string, _ int) (reply, bool) {
		rep, ok := routes[key]
		return rep, ok
	})
}

// newFakeAPIFunc is newFakeAPI answering from route("METHOD /path", how
// many times that key was asked before).
func newFakeAPIFunc(t *testing.T, p *testPKI, route func(key string, n int) (reply, bool)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	asked := map[string]int{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, seen{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type"),
			user: r.TLS.PeerCertificates[0].Subject.CommonName, body: string(body)})
		key := r.Method + " " + r.URL.Path
		n := asked[key]
		asked[key]++
		f.mu.Unlock()
		rep, ok := route(key, n)
		if !ok {
			rep = reply{404, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","message":"the server could not find the requested resource","code":404}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.code)
		io.WriteString(w, rep.body)
	}))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) last() seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[len(f.got)-1]
}

func (f *fakeAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

const nodesJSON = `{"kind":"NodeList","apiVersion":"v1","items":[
 {"metadata":{"name":"w-1"},"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}],
  "addresses":[{"type":"InternalIP","address":"10.79.0.41"},{"type":"Hostname","address":"w-1"}],"nodeInfo":{"kubeletVersion":"v1.35.4"}}},
 {"metadata":{"name":"w-2"},"status":{"conditions":[{"type":"Ready","status":"Unknown"}],"addresses":[],"nodeInfo":{"kubeletVersion":"v1.35.4"}}}]}`

const podsJSON = `{"kind":"PodList","apiVersion":"v1","items":[
 {"metadata":{"name":"coredns-1","namespace":"kube-system"},"spec":{"nodeName":"w-1"},
  "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}},
 {"metadata":{"name":"coredns-2","namespace":"kube-system"},"spec":{},"status":{"phase":"Pending"}}]}`

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
spec:
  replicas: 2
`

func TestClient(t *testing.T) {
	p := newTestPKI(t)
	long := strings.Repeat("x", 10000)
	f := newFakeAPI(t, p, map[string]reply{
		"GET /readyz":       {200, "ok"},
		"GET /api/v1/nodes": {200, nodesJSON},
		"GET /api/v1/namespaces/kube-system/pods":                        {200, podsJSON},
		"PATCH /apis/apps/v1/namespaces/kube-system/deployments/coredns": {200, `{"kind":"Deployment"}`},
		"DELETE /api/v1/namespaces/probe/services/probe":                 {200, `{"kind":"Status","status":"Success"}`},
		"GET /api/v1/namespaces/secret":                                  {403, `{"kind":"Status","status":"Failure","reason":"Forbidden","message":"namespaces \"secret\" is forbidden: ` + long + `","code":403}`},
		"PATCH /api/v1/namespaces/bad":                                   {422, `{"kind":"Status","status":"Failure","reason":"Invalid","message":"Namespace \"bad\" is invalid: metadata.labels: Invalid value","code":422}`},
	})
	c, err := New(Credentials{Server: f.srv.URL, CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if s := f.last(); s.method != "GET" || s.path != "/readyz" || s.user != "kubedos-admin:alice" {
		t.Errorf("Ready sent %+v", s)
	}

	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{
		{Name: "w-1", Ready: true, Addresses: []Address{{"InternalIP", "10.79.0.41"}, {"Hostname", "w-1"}}, KubeletVersion: "v1.35.4"},
		{Name: "w-2", Ready: false, Addresses: []Address{}, KubeletVersion: "v1.35.4"},
	}
	if !reflect.DeepEqual(nodes, want) {
		t.Errorf("Nodes = %+v, want %+v", nodes, want)
	}

	pods, err := c.Pods(ctx, "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	wantPods := []Pod{{"kube-system", "coredns-1", "Running", true, "w-1"}, {"kube-system", "coredns-2", "Pending", false, ""}}
	if !reflect.DeepEqual(pods, wantPods) {
		t.Errorf("Pods = %+v, want %+v", pods, wantPods)
	}

	if err := c.Apply(ctx, []byte(deployment)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	s := f.last()
	if s.method != "PATCH" || s.path != "/apis/apps/v1/namespaces/kube-system/deployments/coredns" ||
		s.contentType != "application/apply-patch+yaml" || s.query != "fieldManager=kubedos&force=true" || s.body != deployment {
		t.Errorf("Apply sent %+v", s)
	}

	if err := c.Delete(ctx, "/api/v1/namespaces/probe/services/probe"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if s := f.last(); s.method != "DELETE" || s.path != "/api/v1/namespaces/probe/services/probe" {
		t.Errorf("Delete sent %+v", s)
	}
	if err := c.Delete(ctx, "/api/v1/namespaces/probe/services/gone"); err != nil {
		t.Errorf("Delete of an object already gone: %v, want nil", err)
	}

	var ns map[string]any
	err = c.Get(ctx, "/api/v1/namespaces/missing", &ns)
	var ae *APIError
	if !errors.Is(err, errdefs.ErrNotFound) || !errors.As(err, &ae) || ae.Reason != "NotFound" ||
		!strings.Contains(err.Error(), "could not find the requested resource") {
		t.Errorf("Get of a missing object: %v", err)
	}
	err = c.Get(ctx, "/api/v1/namespaces/secret", &ns)
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), `namespaces \"secret\" is forbidden`) || len(err.Error()) > 2*maxMessage {
		t.Errorf("forbidden: %d bytes: %.200v", len(err.Error()), err)
	}
	err = c.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: bad}\n"))
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "metadata.labels: Invalid value") {
		t.Errorf("invalid object: %v", err)
	}

	// Refused before anything is sent.
	n := f.count()
	for _, bad := range []string{"api/v1/nodes", "/api/v1/../../etc", "/api/v1/nodes?watch=1"} {
		if err := c.Get(ctx, bad, nil); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Get(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := c.Pods(ctx, "a/b"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Pods(a/b): %v", err)
	}
	if f.count() != n {
		t.Errorf("%d requests sent for refused paths", f.count()-n)
	}
}

func TestReadyFailing(t *testing.T) {
	p := newTestPKI(t)
	f := newFakeAPI(t, p, map[string]reply{"GET /readyz": {500, "[-]etcd failed: reason withheld\nreadyz check failed"}})
	c, err := New(Credentials{Server: f.srv.URL, CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ready(context.Background())
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "[-]etcd failed") {
		t.Errorf("Ready of a failing server: %v", err)
	}
}

// TestTLS: the server is verified against the CA given, and a client
// certificate of another CA is refused by the server.
func TestTLS(t *testing.T) {
	p := newTestPKI(t)
	f := newFakeAPI(t, p, map[string]reply{"GET /readyz": {200, "ok"}})
	ctx := context.Background()
	_, _, wrongCAPEM := selfSigned(t, "not-the-ca")
	c, err := New(Credentials{Server: f.srv.URL, CA: wrongCAPEM, Cert: p.clientCert, Key: p.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server of another CA: %v, want a certificate error", err)
	}
	c, err = New(Credentials{Server: f.srv.URL, CA: p.caPEM, Cert: p.otherCert, Key: p.otherKeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
	if f.count() != 0 {
		t.Errorf("%d requests reached the handler", f.count())
	}
	for _, bad := range []Credentials{
		{Server: "http://127.0.0.1:6443", CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey},
		{Server: "https://127.0.0.1:6443/prefix", CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey},
		{Server: f.srv.URL, CA: []byte("no pem"), Cert: p.clientCert, Key: p.clientKey},
		{Server: f.srv.URL, CA: p.caPEM, Cert: p.clientCert, Key: p.otherKeyPEM},
	} {
		if _, err := New(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("New(%s…): %v, want ErrInvalid", bad.Server, err)
		}
	}
}

func TestObjectPath(t *testing.T) {
	for _, tc := range []struct{ obj, want string }{
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: probe}", "/api/v1/namespaces/probe"},
		{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: coredns, namespace: kube-system}", "/api/v1/namespaces/kube-system/serviceaccounts/coredns"},
		{`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"coredns","namespace":"kube-system"}}`, "/api/v1/namespaces/kube-system/configmaps/coredns"},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: probe, namespace: probe}", "/api/v1/namespaces/probe/services/probe"},
		{deployment, "/apis/apps/v1/namespaces/kube-system/deployments/coredns"},
		{"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x, namespace: kube-system}", "/apis/apps/v1/namespaces/kube-system/daemonsets/x"},
		{"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: 'system:coredns'}", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:coredns"},
		{"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: kubedos-apiserver-kubelet}", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubedos-apiserver-kubelet"},
		{"apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: r, namespace: kube-system}", "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/r"},
	} {
		got, err := ObjectPath([]byte(tc.obj))
		if err != nil || got != tc.want {
			t.Errorf("ObjectPath(%.60q) = %q, %v; want %q", tc.obj, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ obj, msg string }{
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: x}", `kind "Secret" is not one`},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}", "needs a valid namespace"},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}", "cluster-scoped"},
		{"apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d, namespace: x}", "want apps/<version>"},
		{"apiVersion: apps/v1\nkind: Service\nmetadata: {name: d, namespace: x}", "want v1"},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../../x, namespace: x}", "not a valid name"},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: 'a/b'}", "needs a valid namespace"},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}", "one object per Apply"},
		{"{", "object"},
	} {
		_, err := ObjectPath([]byte(tc.obj))
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ObjectPath(%.60q): %v, want ErrInvalid naming %q", tc.obj, err, tc.msg)
		}
	}
}

func TestKubeconfig(t *testing.T) {
	p := newTestPKI(t)
	creds := Credentials{Server: "https://10.10.10.31:6443", CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey}
	raw, err := Kubeconfig("reference", "kubedos-admin:alice", creds)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"certificate-authority-data:", "client-certificate-data:", "client-key-data:", "current-context: reference",
		"server: https://10.10.10.31:6443", "name: kubedos-admin:alice"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, raw)
		}
	}
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Error("the key is in the kubeconfig unencoded")
	}
	got, err := ParseKubeconfig(raw, "")
	if err != nil || !reflect.DeepEqual(got, creds) {
		t.Errorf("round trip: %+v, %v", got, err)
	}

	// Files, as kubeplan writes them: absolute paths, and a relative one
	// resolved against the kubeconfig's directory.
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.crt": p.caPEM, "c.crt": p.clientCert, "c.key": p.clientKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kc := `{"apiVersion":"v1","kind":"Config","current-context":"kubedos",
 "clusters":[{"name":"kubedos","cluster":{"server":"https://10.79.0.31:6443","certificate-authority":"` + filepath.Join(dir, "ca.crt") + `"}}],
 "users":[{"name":"kubelet","user":{"client-certificate":"` + filepath.Join(dir, "c.crt") + `","client-key":"c.key"}}],
 "contexts":[{"name":"kubedos","context":{"cluster":"kubedos","user":"kubelet"}}]}`
	path := filepath.Join(dir, "kubelet.kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = LoadKubeconfig(path)
	want := Credentials{Server: "https://10.79.0.31:6443", CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("file kubeconfig: %+v, %v", got, err)
	}
	if _, err := NewFromKubeconfig(path); err != nil {
		t.Errorf("NewFromKubeconfig: %v", err)
	}

	for _, tc := range []struct{ name, edit, msg string }{
		{"token", `"client-key":"c.key"`, "only client certificates"},
		{"insecure", `"certificate-authority"`, "insecure-skip-tls-verify"},
		{"no context", `"current-context":"kubedos"`, `context "other" is not defined`},
		{"missing key file", `"client-key":"c.key"`, "client-key"},
	} {
		bad := kc
		switch tc.name {
		case "token":
			bad = strings.Replace(kc, tc.edit, `"client-key":"c.key","token":"abc"`, 1)
		case "insecure":
			bad = strings.Replace(kc, tc.edit, `"insecure-skip-tls-verify":true,"certificate-authority"`, 1)
		case "no context":
			bad = strings.Replace(kc, tc.edit, `"current-context":"other"`, 1)
		case "missing key file":
			bad = strings.Replace(kc, tc.edit, `"client-key":"nope.key"`, 1)
		}
		if _, err := ParseKubeconfig([]byte(bad), dir); !errors.Is(err, ErrKubeconfig) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrKubeconfig naming %q", tc.name, err, tc.msg)
		}
	}
}
