package hub

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serveKube runs the kube env's hub on loopback at real time (TLS checks
// validity against the system clock).
func serveKube(t *testing.T, ke *kubeEnv) string {
	t.Helper()
	ke.clock = &clock{t: time.Now()}
	ke.newKubeHub()
	return serveHub(t, ke.hub, ke.ca)
}

func TestKubeCertsOverGRPC(t *testing.T) {
	ke := newKubeEnv(t)
	addr := serveKube(t, ke)
	ctx := context.Background()
	n, got := ke.enrolled("w-1", "worker")
	nodeCert := &tls.Certificate{Certificate: [][]byte{got.Cert.Raw}, PrivateKey: n.key, Leaf: got.Cert}
	call := func(cert *tls.Certificate, kinds ...pki.KubeCert) (*api.KubeCertsResponse, error) {
		return api.NewKubeCertsClient(dialHub(t, ke.env, addr, cert)).Issue(ctx, &api.KubeCertsRequest{CSRs: hostileCSRs(t, kinds...)})
	}
	if _, err := call(nil, pki.KubeletClient); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want Unauthenticated", err)
	}
	if _, err := call(clientCert(t, ke.env, "alice", pki.RoleAdmin), pki.APIServer); status.Code(err) != codes.PermissionDenied {
		t.Errorf("admin certificate: %v, want PermissionDenied", err)
	}
	if _, err := call(nodeCert, pki.APIServer); status.Code(err) != codes.PermissionDenied {
		t.Errorf("worker asking for apiserver: %v, want PermissionDenied", err)
	}
	res, err := call(nodeCert, pki.KubeletClient, pki.KubeletServing)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(res.KubernetesCA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(res.Certificates[string(pki.KubeletClient)])
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "system:node:w-1" || c.CheckSignatureFrom(ca) != nil || res.ServiceAccountKey != nil {
		t.Errorf("kubelet client %q, SA key sent %v", c.Subject.CommonName, res.ServiceAccountKey != nil)
	}
	if err := ke.hub.Revoke(ctx, operator, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(nodeCert, pki.KubeletClient); status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked node: %v, want Unauthenticated", err)
	}
}

// TestKubePlanOverGRPC: a worker asking Holds with its node certificate
// gets its plan over TLS; the master, whose role runs no component, gets
// its (empty) holdings and no plan; an operator is refused.
func TestKubePlanOverGRPC(t *testing.T) {
	ke := newKubeEnv(t)
	addr := serveKube(t, ke)
	ctx := context.Background()
	holds := func(cert *tls.Certificate) (*api.KubeHoldsResponse, error) {
		return api.NewKubeCertsClient(dialHub(t, ke.env, addr, cert)).Holds(ctx)
	}
	n, got := ke.enrolled("w-1", "worker")
	res, err := holds(&tls.Certificate{Certificate: [][]byte{got.Cert.Raw}, PrivateKey: n.key, Leaf: got.Cert})
	if err != nil {
		t.Fatal(err)
	}
	want, err := kubeplan.For(ke.spec, "w-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Plan, want) {
		t.Errorf("worker's plan over gRPC %+v, want %+v", res.Plan, want)
	}
	if !slices.Equal(res.Certificates, []string{"kubelet-client", "kubelet-serving", "kube-proxy"}) {
		t.Errorf("worker holds %v", res.Certificates)
	}
	if !bytes.Equal(res.KubernetesCA, ke.cas.Kubernetes.Certificate().Raw) {
		t.Error("a plan came without the Kubernetes CA")
	}
	// A load balancer holds no certificate, and gets its plan and the CA
	// its haproxy checks the API servers against.
	ke.policy["lb-2"] = "loadbalancer"
	l, lgot := ke.enrolled("lb-2", "loadbalancer")
	res, err = holds(&tls.Certificate{Certificate: [][]byte{lgot.Cert.Raw}, PrivateKey: l.key, Leaf: lgot.Cert})
	if err != nil || len(res.Certificates) != 0 || res.Plan == nil || res.Plan.LB == nil || res.Plan.LB.Priority != kubeplan.MaxVRRPPriority-1 {
		t.Fatalf("load balancer: %+v, %v; want its plan and no certificates", res, err)
	}
	if !bytes.Equal(res.KubernetesCA, ke.cas.Kubernetes.Certificate().Raw) {
		t.Error("a load balancer's plan came without the Kubernetes CA")
	}
	m, mgot := ke.enrolled("master", "master")
	res, err = holds(&tls.Certificate{Certificate: [][]byte{mgot.Cert.Raw}, PrivateKey: m.key, Leaf: mgot.Cert})
	if err != nil || res.Plan != nil || len(res.Certificates) != 0 || res.KubernetesCA != nil {
		t.Errorf("master: %+v, %v; want no certificates and no plan", res, err)
	}
	if _, err := holds(clientCert(t, ke.env, "alice", pki.RoleOperator)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator: %v, want PermissionDenied", err)
	}
}

// TestKubeAdminOverGRPC: over TLS, an admin's certificate gets a
// credential for its CSR's key and the CA; an operator's, a reader's and a
// node's are PermissionDenied, and no certificate is Unauthenticated.
func TestKubeAdminOverGRPC(t *testing.T) {
	ke := newKubeEnv(t)
	addr := serveKube(t, ke)
	ctx := context.Background()
	key, csr := adminCSR(t, "system:node:w-1", "system:masters")
	call := func(cert *tls.Certificate) (*api.KubeAdminResponse, error) {
		return api.NewKubeCertsClient(dialHub(t, ke.env, addr, cert)).Admin(ctx, csr)
	}
	n, got := ke.enrolled("w-1", "worker")
	for name, cert := range map[string]*tls.Certificate{
		"operator": clientCert(t, ke.env, "olga", pki.RoleOperator),
		"reader":   clientCert(t, ke.env, "rita", pki.RoleReader),
		"node":     {Certificate: [][]byte{got.Cert.Raw}, PrivateKey: n.key, Leaf: got.Cert},
	} {
		if res, err := call(cert); status.Code(err) != codes.PermissionDenied || res != nil {
			t.Errorf("%s: %v, %v; want PermissionDenied", name, res, err)
		}
	}
	if _, err := call(nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want Unauthenticated", err)
	}
	res, err := call(clientCert(t, ke.env, "alice", pki.RoleAdmin))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(res.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(res.KubernetesCA)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "kubedos-admin:alice" || res.User != c.Subject.CommonName || !c.NotAfter.Equal(res.NotAfter) ||
		c.CheckSignatureFrom(ca) != nil || !c.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Errorf("credential CN %q user %q notAfter %v/%v", c.Subject.CommonName, res.User, c.NotAfter, res.NotAfter)
	}
	if res.Server != "https://10.10.10.100:6443" {
		t.Errorf("server %q", res.Server)
	}
}
