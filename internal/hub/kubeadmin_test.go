package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// adminCSR is a CSR whose subject asks for what it must not get: a node's
// user and a group of its own choosing.
func adminCSR(t *testing.T, cn string, org ...string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: org}, DNSNames: []string{"kubernetes"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// TestKubeAdminRefused: only an admin gets a Kubernetes admin credential.
// An operator, a reader and a node (enrolled, in good standing) are denied,
// each refusal audited as kubernetes.admin under the caller's name; so is
// a hub without Kubernetes CAs, and a CSR that does not parse.
func TestKubeAdminRefused(t *testing.T) {
	ke := newKubeEnv(t)
	ctx := context.Background()
	_, got := ke.enrolled("w-1", "worker")
	node, _ := ke.peerOf(got)
	_, csr := adminCSR(t, "kubedos-admin:alice", "system:masters")
	for _, tc := range []struct {
		name  string
		peer  pki.Peer
		actor string
	}{
		{"operator", operator, "olga (operator)"},
		{"reader", reader, "rita (reader)"},
		{"node", node, "node:w-1"},
	} {
		before := ke.lastAudit().Seq
		out, err := ke.hub.IssueKubeAdmin(ctx, tc.peer, csr)
		if !errors.Is(err, ErrForbidden) || out != nil {
			t.Errorf("%s: %v, %v; want ErrForbidden and nothing", tc.name, out, err)
		}
		a := ke.lastAudit()
		if a.Seq != before+1 || a.Action != "kubernetes.admin" || a.Actor != tc.actor || a.Outcome != OutcomeDenied {
			t.Errorf("%s: audit %+v, want a denied kubernetes.admin by %s", tc.name, a, tc.actor)
		}
	}

	if out, err := ke.hub.IssueKubeAdmin(ctx, admin, []byte("not a CSR")); !errors.Is(err, ErrInvalid) || out != nil {
		t.Errorf("garbage CSR: %v, %v", out, err)
	}
	if a := ke.lastAudit(); a.Action != ActionKubeAdmin || a.Actor != "alice (admin)" || a.Outcome != OutcomeFailed {
		t.Errorf("garbage CSR audit %+v", a)
	}

	ke.newHub() // no Kubernetes CAs
	if out, err := ke.hub.IssueKubeAdmin(ctx, admin, csr); !errors.Is(err, ErrState) || out != nil {
		t.Errorf("hub without Kubernetes CAs: %v, %v", out, err)
	}
	if a := ke.lastAudit(); a.Action != ActionKubeAdmin || a.Outcome != OutcomeFailed {
		t.Errorf("no-CA audit %+v", a)
	}
}

// TestKubeAdmin: an admin gets a system:masters credential named after
// itself whatever its CSR asks for, for at most an hour and never longer
// than the spec's certificateLifetime, with the API server's URL an
// operator's machine reaches: the VIP, or the first control-plane node's
// LAN address without load balancers.
func TestKubeAdmin(t *testing.T) {
	ke := newKubeEnv(t)
	ctx := context.Background()
	for _, csrSubject := range []struct {
		cn  string
		org []string
	}{
		{"system:node:w-1", []string{"system:nodes"}},
		{"kubedos-admin:mallory", []string{"other"}},
	} {
		key, csr := adminCSR(t, csrSubject.cn, csrSubject.org...)
		out, err := ke.hub.IssueKubeAdmin(ctx, admin, csr)
		if err != nil {
			t.Fatal(err)
		}
		c := out.Cert
		if c.Subject.CommonName != "kubedos-admin:alice" || !slices.Equal(c.Subject.Organization, []string{"system:masters"}) {
			t.Errorf("CSR %q/%v got CN %q O %v; want the hub-set kubedos-admin:alice / system:masters",
				csrSubject.cn, csrSubject.org, c.Subject.CommonName, c.Subject.Organization)
		}
		if len(c.DNSNames) != 0 {
			t.Errorf("SANs %v taken from the CSR", c.DNSNames)
		}
		if !c.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
			t.Error("not for the CSR's key")
		}
		if got := c.NotAfter.Sub(ke.clock.Now()); got != time.Hour {
			t.Errorf("life %v, want 1h (spec default 24h, capped)", got)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: ke.cas.Kubernetes.Pool(), CurrentTime: ke.clock.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("does not chain to the Kubernetes CA: %v", err)
		}
		if !out.KubernetesCA.Equal(ke.cas.Kubernetes.Certificate()) {
			t.Error("the response's CA is not the Kubernetes CA")
		}
		if out.Server != "https://10.10.10.100:6443" {
			t.Errorf("server %q, want the VIP https://10.10.10.100:6443", out.Server)
		}
		a := ke.lastAudit()
		if a.Action != ActionKubeAdmin || a.Actor != "alice (admin)" || a.Outcome != OutcomeOK || a.Target != "kubedos-admin:alice" ||
			!strings.Contains(a.Detail, pki.SerialString(c.SerialNumber)) || !strings.Contains(a.Detail, c.NotAfter.UTC().Format(time.RFC3339)) {
			t.Errorf("audit %+v, want kubernetes.admin by alice with serial and expiry", a)
		}
	}

	// A shorter spec lifetime wins; without load balancers or VIP the
	// server is the first control-plane node's LAN address.
	ke.spec.Workloads.Kubernetes.CertificateLifetime = "30m"
	ke.spec.Topology.Nodes = slices.DeleteFunc(ke.spec.Topology.Nodes, func(n spec.Node) bool { return n.Role == spec.RoleLoadBalancer })
	ke.spec.Topology.APIVIP = ""
	_, csr := adminCSR(t, "x")
	out, err := ke.hub.IssueKubeAdmin(ctx, admin, csr)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Cert.NotAfter.Sub(ke.clock.Now()); got != 30*time.Minute {
		t.Errorf("life %v, want the spec's 30m", got)
	}
	if out.Server != "https://10.10.10.31:6443" {
		t.Errorf("server %q, want cp-1's LAN address https://10.10.10.31:6443", out.Server)
	}
}

// TestAdminAPIServer: an operator's kubeconfig names the VIP whoever holds
// it (load balancers or control planes), else the first control plane on
// the LAN.
func TestAdminAPIServer(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"reference", examples.Reference, "https://10.10.10.100:6443"},
		{"local-ha", examples.LocalHA, "https://10.50.0.5:6443"},
		{"local-k8s", examples.LocalK8s, "https://10.40.0.11:6443"},
	} {
		s, err := spec.LoadBytes(c.data)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := adminAPIServer(s); err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %s", c.name, got, err, c.want)
		}
	}
}
