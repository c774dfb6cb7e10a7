package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/spec"
)

// kubeHub serves, on loopback, a hub over the local-k8s spec holding
// Kubernetes CAs; it returns its address, the cluster CA, the Kubernetes
// CAs and the store (to read the audit log).
func kubeHub(t *testing.T, specFile string) (string, *pki.CA, *pki.KubeCAs, *hub.Store) {
	t.Helper()
	s, err := spec.Load(specFile)
	if err != nil {
		t.Fatal(err)
	}
	ca := pkitest.NewCA(t)
	cas, err := pki.InitKubeKeys(t.TempDir(), "local-k8s", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	iss, err := hub.NewKubeIssuer(cas, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := hub.Open(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := hub.New(hub.Options{Store: st, CA: ca, Verifier: hub.AttestVerifier{}, Policy: anyBuild{}, Spec: s, Kube: iss})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hub.NewServer(h, ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, lis); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String(), ca, cas, st
}

// kubedos kubeconfig against a real hub: an admin gets a kubeconfig
// (0600, embedded CA, certificate and key, the key never printed) whose
// certificate is the hub's system:masters credential for that admin; the
// file is not replaced without --force; a reader is refused and gets no
// file; each is in the hub's audit log.
func TestKubeconfigCommand(t *testing.T) {
	dir := t.TempDir()
	specFile := filepath.Join(dir, "local-k8s.yaml")
	if err := os.WriteFile(specFile, examples.LocalK8s, 0o644); err != nil {
		t.Fatal(err)
	}
	addr, ca, cas, st := kubeHub(t, specFile)
	admin := pkitest.WriteKeys(t, ca, pki.RoleAdmin)
	out := filepath.Join(dir, "admin.kubeconfig")

	code, stdout, stderr := run(t, "kubeconfig", specFile, "--hub", addr, "--keys", admin, "--out", out, "-o", "json")
	if code != 0 {
		t.Fatalf("kubeconfig: exit %d: %s", code, stderr)
	}
	var got struct {
		Path, Server, User string
		NotAfter           time.Time
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output %q: %v", stdout, err)
	}
	if got.Path != out || got.Server != "https://10.40.0.11:6443" || got.User != "kubedos-admin:admin" ||
		got.NotAfter.Before(time.Now().Add(50*time.Minute)) || got.NotAfter.After(time.Now().Add(time.Hour)) {
		t.Errorf("output %+v: want %s, cp-1's LAN address, kubedos-admin:admin, about an hour", got, out)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", out, err, fi.Mode())
	}
	creds, err := kube.LoadKubeconfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if creds.Server != got.Server {
		t.Errorf("kubeconfig server %q", creds.Server)
	}
	pair, err := tls.X509KeyPair(creds.Cert, creds.Key)
	if err != nil {
		t.Fatalf("certificate and key in the kubeconfig: %v", err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.Subject.CommonName != "kubedos-admin:admin" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "system:masters" {
		t.Errorf("credential subject %v", leaf.Subject)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(creds.CA) || !cas.Kubernetes.Certificate().Equal(parsePEM(t, creds.CA)) {
		t.Error("the kubeconfig's CA is not the Kubernetes CA")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("credential does not chain to the Kubernetes CA: %v", err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(pair.PrivateKey.(*ecdsa.PrivateKey))
	raw, _ := os.ReadFile(out)
	for _, secret := range []string{string(creds.Key), string(keyDER), "PRIVATE KEY"} {
		if strings.Contains(stdout+stderr, secret) {
			t.Error("the private key was printed")
		}
	}
	if a := lastAudit(t, st); a.Action != "kubernetes.admin" || a.Actor != "admin (admin)" || a.Outcome != hub.OutcomeOK ||
		!strings.Contains(a.Detail, pki.SerialString(leaf.SerialNumber)) {
		t.Errorf("audit %+v", a)
	}

	// Not replaced without --force, and the hub is not asked.
	seq := lastAudit(t, st).Seq
	code, _, stderr = run(t, "kubeconfig", specFile, "--hub", addr, "--keys", admin, "--out", out)
	if after, _ := os.ReadFile(out); code == 0 || !strings.Contains(stderr, "--force") || string(after) != string(raw) || lastAudit(t, st).Seq != seq {
		t.Errorf("existing file: exit %d, %q; changed %v", code, stderr, string(after) != string(raw))
	}
	code, stdout, stderr = run(t, "kubeconfig", specFile, "--hub", addr, "--keys", admin, "--out", out, "--force")
	if after, _ := os.ReadFile(out); code != 0 || string(after) == string(raw) || !strings.Contains(stdout, "wrote "+out+": user kubedos-admin:admin on https://10.40.0.11:6443") {
		t.Errorf("--force: exit %d, %q %q", code, stdout, stderr)
	}

	// A reader (and an operator) is refused, audited, and nothing written.
	for _, role := range []pki.Role{pki.RoleReader, pki.RoleOperator} {
		other := filepath.Join(dir, string(role)+".kubeconfig")
		code, _, stderr = run(t, "kubeconfig", specFile, "--hub", addr, "--keys", pkitest.WriteKeys(t, ca, role), "--out", other)
		if _, err := os.Stat(other); code == 0 || err == nil || !strings.Contains(stderr, "may not kubernetes.admin") {
			t.Errorf("%s: exit %d, %q, file: %v", role, code, stderr, err)
		}
		if a := lastAudit(t, st); a.Action != "kubernetes.admin" || a.Outcome != hub.OutcomeDenied || !strings.Contains(a.Actor, string(role)) {
			t.Errorf("%s refusal audit %+v", role, a)
		}
	}
}

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func lastAudit(t *testing.T, st *hub.Store) hub.AuditEntry {
	t.Helper()
	es, err := st.Audit(0, 100000)
	if err != nil || len(es) == 0 {
		t.Fatalf("audit: %v (%d entries)", err, len(es))
	}
	return es[len(es)-1]
}
