package hubhost

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/tpmseal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testCA is a cluster CA like the key ceremony's, with its key in PEM.
type testCA struct {
	*pki.CA
	certPEM, keyPEM []byte
}

func newTestCA(t testing.TB, cn string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca, err := pki.NewCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	return testCA{CA: ca, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}
}

// simSealer seals with the go-tpm-tools simulator, one TPM for the test.
func simSealer(t *testing.T, seed int64) (TPMSealer, io.ReadWriteCloser) {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	pol := bootSignedUKI(t, sim)
	return TPMSealer{Open: func() (io.ReadWriteCloser, error) { return attesttest.NoClose(sim), nil },
		Policy: func() (tpmseal.Policy, error) { return pol, nil }}, sim
}

var (
	pcrKeyOnce sync.Once
	pcrKey     *rsa.PrivateKey
)

// bootSignedUKI measures a UKI into the simulator's PCR 11, as systemd-stub
// does, and returns the policy that UKI carries: that PCR 11 signed by the
// platform's PCR policy key.
func bootSignedUKI(t *testing.T, sim io.ReadWriter) tpmseal.Policy {
	t.Helper()
	pcrKeyOnce.Do(func() {
		var err error
		if pcrKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	d := sha256.Sum256([]byte("the master's UKI"))
	if err := tpm2.PCRExtend(sim, 11, tpm2.AlgSHA256, d[:], ""); err != nil {
		t.Fatal(err)
	}
	return signedPolicy(t, sim)
}

// signedPolicy is the policy of a UKI whose PCR 11 is the current one.
func signedPolicy(t *testing.T, sim io.ReadWriter) tpmseal.Policy {
	t.Helper()
	vals, err := tpm2.ReadPCRs(sim, tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{11}})
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := tpmseal.Sign(pcrKey, [][]byte{vals[11]})
	if err != nil {
		t.Fatal(err)
	}
	return tpmseal.Policy{Key: &pcrKey.PublicKey, Signatures: sigs}
}

// policy expects the recorded OVMF boot of every node.
type policy struct{ pred measure.Prediction }

func (p policy) Expected(string, string) (string, measure.Prediction, error) {
	return "build-master", p.pred, nil
}

// enrolledState makes a hub state file in which node name enrolled through
// the real gate: a simulated TPM booting the recorded OVMF log, the
// attestation verifier, the CA signing its CSR.
func enrolledState(t *testing.T, ca *pki.CA, name string) []byte {
	t.Helper()
	dir := filepath.Join("..", "..", attesttest.RecordedBootDir)
	pred, err := attesttest.RecordedPrediction(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	events, err := attesttest.RecordedEvents(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hub.db")
	st, err := hub.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Options{Store: st, CA: ca, Verifier: hub.AttestVerifier{}, Policy: policy{pred}, AllowWindow: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.OpenWindow(ctx, pki.Peer{Name: "ops", Role: pki.RoleAdmin}, time.Hour); err != nil {
		t.Fatal(err)
	}
	sim, err := simulator.GetWithFixedSeedInsecure(42)
	if err != nil {
		t.Fatal(err)
	}
	n, err := attesttest.NewNode(sim, attesttest.Boot{Measured: events, Words: measure.PhaseReady.Words})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	id, err := n.Prover.Identity()
	if err != nil {
		t.Fatal(err)
	}
	begun, err := h.BeginEnrollment(ctx, hub.BeginRequest{Name: name, Role: "master", Identity: hub.TPMIdentity{
		EKPublic: id.EKPublic, EKCertificate: id.EKCertificate, AK: hub.AKParameters(id.AK)}})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := n.Prover.ActivateCredential(attest.Challenge(begun.Challenge))
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := h.CompleteActivation(ctx, begun.Session, secret)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := n.Prover.Quote(nonce.Value, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if _, err := h.Enroll(ctx, hub.EnrollRequest{Session: begun.Session, Nonce: nonce.Value, Evidence: hub.Evidence(ev), BuildID: "build-master", CSR: csr}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := st.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type fixture struct {
	ca        testCA
	artifact  ed25519.PrivateKey
	handoff   api.HubHandoff
	dir, self string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: newTestCA(t, "kubedos local CA"), self: filepath.Join(t.TempDir(), "hub.addr")}
	f.dir = filepath.Join(t.TempDir(), "lib", "hub")
	_, f.artifact, _ = ed25519.GenerateKey(rand.Reader)
	spec := examples.Local
	m := []byte(`{"kind":"BuildManifest","cluster":"local","buildID":"b-1"}`)
	sig, err := sign.SignBlob(f.artifact, m)
	if err != nil {
		t.Fatal(err)
	}
	f.handoff = api.HubHandoff{CACert: f.ca.certPEM, CAKey: f.ca.keyPEM, Spec: spec, Manifest: m, Signature: sig,
		State: enrolledState(t, f.ca.CA, "master"), Hosts: []string{"10.20.0.10"}}
	return f
}

func (f *fixture) keeper(s Sealer) *Keeper {
	return NewKeeper(KeeperConfig{Dir: f.dir, CA: f.ca.Certificate(), ArtifactKey: f.artifact.Public().(ed25519.PublicKey), Sealer: s,
		Listen: "127.0.0.1:0", SelfFile: f.self, SelfAddr: "127.0.0.1:7443"})
}

// run starts k.Run until the test ends or stop is called.
func run(t *testing.T, k *Keeper) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	for k.ctxOrNil() == nil {
		time.Sleep(time.Millisecond)
	}
	return stop
}

func (k *Keeper) ctxOrNil() context.Context {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ctx
}

// admin calls the hub at addr as an admin of ca.
func admin(t *testing.T, ca *pki.CA, addr string) *api.AdminClient {
	t.Helper()
	is, err := ca.IssueClient("ops", pki.RoleAdmin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := is.TLSCertificate()
	conf := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{c}, ServerName: api.HubServerName, MinVersion: tls.VersionTLS13}
	cc, err := api.Dial(addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewAdminClient(cc)
}

func TestTakeOverServesAndSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	sealer, sim := simSealer(t, 7)
	booted, _ := sealer.Policy() // the UKI booted now; an upgrade replaces it
	sealer.Policy = func() (tpmseal.Policy, error) { return booted, nil }
	k := f.keeper(sealer)
	stop := run(t, k)
	ctx := context.Background()
	res, err := k.TakeOver(ctx, "master", "master", "ops@admin", &f.handoff)
	if err != nil {
		t.Fatal(err)
	}
	if res.Node != "master" || res.Nodes != 1 || !res.Sealed || res.AuditSeq == 0 || res.AuditHead == "" {
		t.Errorf("result %+v", res)
	}
	sealed, err := os.ReadFile(filepath.Join(f.dir, FileCAKey))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, f.ca.keyPEM) || bytes.Contains(sealed, []byte("PRIVATE KEY")) {
		t.Error("the CA key is stored in the clear")
	}
	if fi, err := os.Stat(filepath.Join(f.dir, FileState)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", fi, err)
	}
	if b, err := os.ReadFile(f.self); err != nil || strings.TrimSpace(string(b)) != "127.0.0.1:7443" {
		t.Errorf("self hub file: %q, %v", b, err)
	}
	check := func(addr string) {
		t.Helper()
		cl := admin(t, f.ca.CA, addr)
		nodes, err := cl.ListNodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Nodes) != 1 || nodes.Nodes[0].Name != "master" || nodes.Nodes[0].State != api.NodeEnrolled {
			t.Errorf("nodes %+v", nodes.Nodes)
		}
		audit, err := cl.Audit(ctx, 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var took int
		for _, e := range audit.Entries {
			if e.Action == ActionTakeOver && e.Actor == "ops@admin" && e.Target == "master" && e.Outcome == hub.OutcomeOK {
				took++
			}
		}
		if took != 1 {
			t.Errorf("%d takeover entries in the audit log, want 1", took)
		}
	}
	check(k.Addr())

	// A second handoff is refused and changes nothing.
	if _, err := k.TakeOver(ctx, "master", "master", "ops@admin", &f.handoff); status.Code(errdefs.ToGRPC(err)) != codes.FailedPrecondition {
		t.Errorf("second takeover: %v", err)
	}

	// A reboot: a new kubedosd serves the kept hub, unsealing the key.
	stop()
	k2 := f.keeper(sealer)
	run(t, k2)
	for deadline := time.Now().Add(10 * time.Second); !k2.Serving() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !k2.Serving() {
		t.Fatal("the kept hub is not served after a restart")
	}
	check(k2.Addr())
	cfg, err := k2.load()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.CA.Certificate().Equal(f.ca.Certificate()) {
		t.Error("reloaded a different CA")
	}

	// Another UKI (PCR 11 changes) that the PCR policy key did not sign:
	// the key stays sealed. A signed upgrade (its own policy signs its PCR
	// 11): the key unseals.
	if err := attesttest.ExtendWords(sim, "another UKI"); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.load(); err == nil || !strings.Contains(err.Error(), "not a value the PCR policy key signed") {
		t.Errorf("load under an unsigned UKI: %v", err)
	}
	booted = signedPolicy(t, sim)
	if _, err := k2.load(); err != nil {
		t.Errorf("load after a signed upgrade: %v", err)
	}
	// Another Secure Boot state (PCR 7 extended): the key stays sealed.
	d := sha256.Sum256([]byte("secure boot off"))
	if err := tpm2.PCRExtend(sim, tpmutil.Handle(7), tpm2.AlgSHA256, d[:], ""); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.load(); err == nil || !strings.Contains(err.Error(), "unseal") {
		t.Errorf("load after PCR 7 changed: %v", err)
	}
}

func TestTakeOverRefusals(t *testing.T) {
	f := newFixture(t)
	workerState := enrolledState(t, f.ca.CA, "w-1") // before the sealer: one simulator at a time
	sealer, _ := simSealer(t, 8)
	other := newTestCA(t, "another CA")
	_, otherArtifact, _ := ed25519.GenerateKey(rand.Reader)
	otherSig, _ := sign.SignBlob(otherArtifact, f.handoff.Manifest)
	foreignM := []byte(`{"kind":"BuildManifest","cluster":"prod","buildID":"b-9"}`)
	foreignSig, _ := sign.SignBlob(f.artifact, foreignM)
	cases := []struct {
		name, self, role string
		mod              func(h *api.HubHandoff)
		code             codes.Code
		want             string
	}{
		{"worker", "w-1", "worker", nil, codes.FailedPrecondition, "the hub runs on a master"},
		{"other CA", "master", "master", func(h *api.HubHandoff) { h.CACert, h.CAKey = other.certPEM, other.keyPEM }, codes.InvalidArgument, "caCert"},
		{"key of another CA", "master", "master", func(h *api.HubHandoff) { h.CAKey = other.keyPEM }, codes.InvalidArgument, "caKey"},
		{"junk key", "master", "master", func(h *api.HubHandoff) { h.CAKey = []byte("junk") }, codes.InvalidArgument, "caKey"},
		{"unsigned manifest", "master", "master", func(h *api.HubHandoff) { h.Signature = otherSig }, codes.InvalidArgument, "signature"},
		{"manifest of another cluster", "master", "master", func(h *api.HubHandoff) { h.Manifest, h.Signature = foreignM, foreignSig }, codes.InvalidArgument, "cluster \"prod\""},
		{"bad spec", "master", "master", func(h *api.HubHandoff) { h.Spec = []byte("kind: [") }, codes.InvalidArgument, "spec"},
		{"not a master of the spec", "w-1", "master", nil, codes.InvalidArgument, "no master named w-1"},
		{"junk state", "master", "master", func(h *api.HubHandoff) { h.State = []byte("not bbolt") }, codes.InvalidArgument, "state"},
		{"empty state", "master", "master", func(h *api.HubHandoff) { h.State = nil }, codes.InvalidArgument, "state: empty"},
		{"master not in the state", "master", "master", func(h *api.HubHandoff) { h.State = workerState }, codes.InvalidArgument, "node master"},
		{"bad EK CA bundle", "master", "master", func(h *api.HubHandoff) { h.EKCAs = []byte("junk") }, codes.InvalidArgument, "ekCAs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := f.keeper(sealer)
			run(t, k)
			h := f.handoff
			if c.mod != nil {
				c.mod(&h)
			}
			_, err := k.TakeOver(context.Background(), c.self, c.role, "ops@admin", &h)
			if status.Code(errdefs.ToGRPC(err)) != c.code || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %s naming %q", err, c.code, c.want)
			}
			if strings.Contains(fmt.Sprint(err), "BEGIN PRIVATE KEY") {
				t.Error("the error carries the key")
			}
			entries, _ := os.ReadDir(filepath.Dir(f.dir))
			if len(entries) != 0 || k.Serving() {
				t.Errorf("left behind after a refusal: %v (serving %v)", entries, k.Serving())
			}
			if _, err := os.Stat(f.self); err == nil {
				t.Error("pointed the node at a hub it does not hold")
			}
		})
	}
}

func TestSealerBindsToTheTPM(t *testing.T) {
	a, _ := simSealer(t, 1)
	blob, err := a.Seal([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Unseal(blob)
	if err != nil || string(got) != "secret" {
		t.Fatalf("unseal: %q, %v", got, err)
	}
	if _, err := a.Unseal([]byte("junk")); err == nil {
		t.Error("unsealed junk")
	}
}

// The master's kubedosd serves the kept hub's /metrics beside it, to
// reader certificates, with the registry in it.
func TestKeeperServesHubMetrics(t *testing.T) {
	f := newFixture(t)
	sealer, _ := simSealer(t, 7)
	k := f.keeper(sealer)
	k.cfg.MetricsListen = "127.0.0.1:0"
	run(t, k)
	if _, err := k.TakeOver(context.Background(), "master", "master", "ops@admin", &f.handoff); err != nil {
		t.Fatal(err)
	}
	addr := k.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics address once the hub is served")
	}
	is, err := f.ca.IssueClient("prometheus", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := is.TLSCertificate()
	conf := &tls.Config{RootCAs: f.ca.Pool(), Certificates: []tls.Certificate{c}, ServerName: api.HubServerName, MinVersion: tls.VersionTLS13}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	res, err := cl.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `kubedos_hub_node_state{node="master",role="master",state="enrolled"} 1`) {
		t.Errorf("hub metrics: %s\n%s", res.Status, body)
	}
}
