package hub

import (
	"context"
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
	m, mgot := ke.enrolled("master", "master")
	res, err = holds(&tls.Certificate{Certificate: [][]byte{mgot.Cert.Raw}, PrivateKey: m.key, Leaf: mgot.Cert})
	if err != nil || res.Plan != nil || len(res.Certificates) != 0 {
		t.Errorf("master: %+v, %v; want no certificates and no plan", res, err)
	}
	if _, err := holds(clientCert(t, ke.env, "alice", pki.RoleOperator)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator: %v, want PermissionDenied", err)
	}
}
