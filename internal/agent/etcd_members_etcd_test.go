package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// etcdServerCert is node's etcd-server certificate, key and etcd CA (PEM)
// from fresh Kubernetes CAs, signed as the hub signs them.
func etcdServerCert(t *testing.T, node string) (certPEM, keyPEM, caPEM []byte) {
	t.Helper()
	now := time.Now()
	cas, err := pki.InitKubeKeys(t.TempDir(), "local-ha", now)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spec.Parse(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	s := spec.WithDefaults(doc.Spec)
	i := slices.IndexFunc(s.Topology.Nodes, func(n spec.Node) bool { return n.Name == node })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	life, _ := s.Workloads.Kubernetes.Lifetimes()
	cert, err := cas.Sign(pki.KubeIssue{Spec: s, Node: s.Topology.Nodes[i], Kind: pki.EtcdServer, CSR: csr, Life: life, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), cas.Etcd.CertPEM()
}

// freePorts are n loopback ports nobody listens on (yet).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}
	return out
}

// TestEtcdMembershipDebianEtcd runs the membership methods against
// Debian's etcd (apt-get install etcd-server) with client certificate
// authentication, as on a node: the list of a member that added a
// learner (not started: no name, no client URL) checks out, the node's
// own member is refused, and the learner is removed.
func TestEtcdMembershipDebianEtcd(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	if testing.Short() {
		t.Skip("starts etcd")
	}
	k, _, _ := etcdJoinRunner(t, newTestCA(t, "cluster CA"), nil, nil)
	// cp-2's etcd-server certificate as the hub issues it (etcd CA;
	// 127.0.0.1 among its addresses; server and client), which etcd
	// serves with and kubedosd calls with.
	certPEM, keyPEM, caPEM := etcdServerCert(t, "cp-2")
	pkiFile := func(name string) string { return filepath.Join(k.root, kubeplan.PKIDir, name) }
	for name, b := range map[string][]byte{"etcd-server.crt": certPEM, "etcd-server.key": keyPEM, "etcd-ca.crt": caPEM} {
		if err := os.WriteFile(pkiFile(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	crt, key, caFile := pkiFile("etcd-server.crt"), pkiFile("etcd-server.key"), pkiFile("etcd-ca.crt")
	ports := freePorts(t, 3)
	client := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--name", "cp-2", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "cp-2="+peer,
		"--client-cert-auth", "--trusted-ca-file", caFile, "--cert-file", crt, "--key-file", key,
		"--peer-trusted-ca-file", caFile, "--peer-cert-file", crt, "--peer-key-file", key)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	k.etcdLocal = client
	cl, err := k.etcdClient()
	if err != nil {
		t.Fatal(err)
	}
	up := false
	for deadline := time.Now().Add(30 * time.Second); !up && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		up = askEtcdHealth(ctx, cl, client+"/health", "cp-2") == nil
	}
	if !up {
		t.Fatalf("etcd never healthy:\n%s", log.String())
	}
	learner := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	if err := etcdCall(ctx, cl, client, "/v3/cluster/member/add", map[string]any{"peerURLs": []string{learner}, "isLearner": true}, nil); err != nil {
		t.Fatal(err)
	}

	got, err := k.EtcdMembers(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(got.Members) != 2 {
		t.Fatalf("members: %+v", got)
	}
	var self, added api.EtcdMember
	for _, m := range got.Members {
		if m.ID == got.Self {
			self = m
		} else {
			added = m
		}
	}
	if self.Name != "cp-2" || self.PeerURLs[0] != peer || self.ClientURLs[0] != client || self.Learner {
		t.Errorf("the answering member: %+v", self)
	}
	if added.Name != "" || added.PeerURLs[0] != learner || len(added.ClientURLs) != 0 || !added.Learner {
		t.Errorf("the learner: %+v", added)
	}
	if _, err := k.EtcdRemoveMember(ctx, self.ID, "cp-2"); err == nil || !strings.Contains(err.Error(), "cp-2's own") {
		t.Errorf("removing the node's own member: %v", err)
	}
	left, err := k.EtcdRemoveMember(ctx, added.ID, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(left.Members) != 1 || left.Members[0].ID != self.ID {
		t.Errorf("left: %+v", left.Members)
	}
	t.Logf("etcd listed %d members; removed the learner %s", len(got.Members), added.ID)
}
