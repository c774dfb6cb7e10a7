package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/spec"
)

func referenceSpec(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	s, err := spec.Load(filepath.Join("..", "..", "examples", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kubeCAs(t *testing.T) *KubeCAs {
	t.Helper()
	dir := t.TempDir()
	cas, err := InitKubeKeys(dir, "test", t0)
	if err != nil {
		t.Fatal(err)
	}
	return cas
}

// hostileCSR asks for everything a node must not get.
func hostileCSR(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:cp-1", Organization: []string{"system:masters"}},
		DNSNames:    []string{"kubernetes", "evil.example"},
		IPAddresses: []net.IP{net.ParseIP("10.10.10.31")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestInitKubeKeysFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := InitKubeKeys(dir, "test", t0); err != nil {
		t.Fatal(err)
	}
	for _, rel := range KubePrivateFiles {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %o, want 600", rel, got)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, KubeDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, want a 0700 directory", KubeDir, err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, KubeCAKeyFile))
	if _, err := InitKubeKeys(dir, "test", t0); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("second init: %v, want a refusal", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, KubeCAKeyFile))
	if string(before) != string(after) {
		t.Fatal("second init changed the CA key")
	}
	cas, err := LoadKubeCAs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cas.Kubernetes.Certificate().Equal(cas.Etcd.Certificate()) || cas.Etcd.Certificate().Equal(cas.FrontProxy.Certificate()) {
		t.Fatal("the CAs are not distinct")
	}
	// A key swapped between CAs is refused, naming the file.
	files, _ := ReadKubeFiles(dir)
	files[EtcdCAKeyFile] = files[KubeCAKeyFile]
	if _, err := ParseKubeFiles(files); !errors.Is(err, ErrBadCA) || !strings.Contains(err.Error(), EtcdCAKeyFile) {
		t.Fatalf("swapped key: %v", err)
	}
}

func TestKubeRoleTable(t *testing.T) {
	s := referenceSpec(t) // has etcd nodes: no stacked etcd
	for _, tc := range []struct {
		role spec.Role
		want []KubeCert
	}{
		{spec.RoleWorker, []KubeCert{KubeletClient, KubeletServing, KubeProxy}},
		{spec.RoleEtcd, []KubeCert{EtcdServer, EtcdPeer}},
		{spec.RoleControlPlane, []KubeCert{APIServer, APIServerKubeletClient, APIServerEtcdClient, ControllerManager, Scheduler, FrontProxyClient}},
		{spec.RoleLoadBalancer, nil},
		{spec.RoleMaster, nil},
	} {
		if got := KubeCertsFor(s, tc.role); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.role, got, tc.want)
		}
	}
	stacked := *s
	stacked.Topology.Nodes = slices.DeleteFunc(slices.Clone(s.Topology.Nodes), func(n spec.Node) bool { return n.Role == spec.RoleEtcd })
	if got := KubeCertsFor(&stacked, spec.RoleControlPlane); !slices.Contains(got, EtcdPeer) || !slices.Contains(got, EtcdServer) {
		t.Errorf("stacked etcd: controlplane gets %v, want etcd certificates too", got)
	}
}

func TestKubeSign(t *testing.T) {
	s := referenceSpec(t)
	cas := kubeCAs(t)
	life := spec.KubeLifetimes{Default: 24 * time.Hour, KubeletClient: time.Hour}
	node := func(name string) spec.Node { n, _ := s.NodeByName(name); return n }
	ip := func(a string) net.IP { return net.ParseIP(a) }
	for _, tc := range []struct {
		node     string
		kind     KubeCert
		ca       *CA
		cn       string
		org      []string
		eku      []x509.ExtKeyUsage
		dns      []string
		ips      []net.IP
		lifetime time.Duration
	}{
		{"w-1", KubeletClient, cas.Kubernetes, "system:node:w-1", []string{"system:nodes"},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, time.Hour},
		{"w-1", KubeletServing, cas.Kubernetes, "system:node:w-1", []string{"system:nodes"},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{"w-1"}, []net.IP{ip("10.10.10.41"), ip("10.79.0.41")}, 24 * time.Hour},
		{"w-1", KubeProxy, cas.Kubernetes, "system:kube-proxy", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour},
		{"cp-1", APIServer, cas.Kubernetes, "kube-apiserver", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "cp-1", "localhost"},
			[]net.IP{ip("10.96.0.1"), ip("10.10.10.100"), ip("10.10.10.51"), ip("10.10.10.52"), ip("10.10.10.53"), ip("10.10.10.31"), ip("10.79.0.31"), ip("127.0.0.1")}, 24 * time.Hour},
		{"cp-1", APIServerKubeletClient, cas.Kubernetes, "kube-apiserver-kubelet-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour},
		{"cp-1", APIServerEtcdClient, cas.Etcd, "kube-apiserver-etcd-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour},
		{"cp-1", ControllerManager, cas.Kubernetes, "system:kube-controller-manager", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour},
		{"cp-1", Scheduler, cas.Kubernetes, "system:kube-scheduler", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour},
		{"cp-1", FrontProxyClient, cas.FrontProxy, "front-proxy-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour},
		{"etcd-1", EtcdServer, cas.Etcd, "etcd-1", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			[]string{"etcd-1", "localhost"}, []net.IP{ip("10.10.10.21"), ip("10.79.0.21"), ip("127.0.0.1"), ip("::1")}, 24 * time.Hour},
		{"etcd-1", EtcdPeer, cas.Etcd, "etcd-1", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			[]string{"etcd-1"}, []net.IP{ip("10.10.10.21"), ip("10.79.0.21")}, 24 * time.Hour},
	} {
		t.Run(tc.node+"/"+string(tc.kind), func(t *testing.T) {
			key := mustP256(t)
			cert, err := cas.Sign(KubeIssue{Spec: s, Node: node(tc.node), Kind: tc.kind, CSR: hostileCSR(t, key), Life: life, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != tc.cn || !slices.Equal(cert.Subject.Organization, tc.org) {
				t.Errorf("subject CN %q O %q, want %q %q (the CSR's names must be ignored)", cert.Subject.CommonName, cert.Subject.Organization, tc.cn, tc.org)
			}
			if !slices.Equal(cert.ExtKeyUsage, tc.eku) {
				t.Errorf("EKU %v, want %v", cert.ExtKeyUsage, tc.eku)
			}
			if !slices.Equal(cert.DNSNames, tc.dns) {
				t.Errorf("DNS SANs %q, want %q", cert.DNSNames, tc.dns)
			}
			if !slices.EqualFunc(cert.IPAddresses, tc.ips, func(a, b net.IP) bool { return a.Equal(b) }) {
				t.Errorf("IP SANs %v, want %v", cert.IPAddresses, tc.ips)
			}
			if got := cert.NotAfter.Sub(t0); got != tc.lifetime {
				t.Errorf("life %v, want %v", got, tc.lifetime)
			}
			if !cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
				t.Error("the certificate is not for the CSR's key")
			}
			// The chain, with the usage Kubernetes components verify.
			usage := tc.eku[0]
			opts := x509.VerifyOptions{Roots: tc.ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}}
			if len(tc.dns) > 0 {
				opts.DNSName = tc.dns[0]
			}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("verify against its CA: %v", err)
			}
			for _, other := range []*CA{cas.Kubernetes, cas.Etcd, cas.FrontProxy} {
				if other == tc.ca {
					continue
				}
				if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
					t.Errorf("verifies against %q too", other.Certificate().Subject.CommonName)
				}
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: tc.ca.Pool(), CurrentTime: t0.Add(tc.lifetime + time.Second), KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
				t.Error("still valid after its life")
			}
		})
	}
}

func TestKubeSignRefusals(t *testing.T) {
	s := referenceSpec(t)
	cas := kubeCAs(t)
	life := spec.KubeLifetimes{Default: time.Hour, KubeletClient: time.Hour}
	w, _ := s.NodeByName("w-1")
	cp, _ := s.NodeByName("cp-1")
	csr := hostileCSR(t, mustP256(t))
	for _, tc := range []struct {
		name string
		req  KubeIssue
		want error
	}{
		{"worker asks apiserver", KubeIssue{Spec: s, Node: w, Kind: APIServer, CSR: csr, Life: life, Now: t0}, ErrKubeRole},
		{"worker asks etcd peer", KubeIssue{Spec: s, Node: w, Kind: EtcdPeer, CSR: csr, Life: life, Now: t0}, ErrKubeRole},
		{"controlplane asks kube-proxy", KubeIssue{Spec: s, Node: cp, Kind: KubeProxy, CSR: csr, Life: life, Now: t0}, ErrKubeRole},
		{"unknown kind", KubeIssue{Spec: s, Node: w, Kind: "admin", CSR: csr, Life: life, Now: t0}, ErrKubeRole},
		{"garbage CSR", KubeIssue{Spec: s, Node: w, Kind: KubeletClient, CSR: []byte("x"), Life: life, Now: t0}, ErrBadCSR},
	} {
		if _, err := cas.Sign(tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	off := *s
	off.Workloads.Kubernetes.Enabled = false
	if _, err := cas.Sign(KubeIssue{Spec: &off, Node: w, Kind: KubeletClient, CSR: csr, Life: life, Now: t0}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Kubernetes disabled: %v", err)
	}
}
