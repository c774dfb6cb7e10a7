package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
)

// The node's identity end to end in one process: the go-tpm-tools
// simulator booted as the recorded OVMF boot, the real hub (attestation
// verifier, bbolt store, CA) served over gRPC on loopback, and the agent's
// own Enroll, Renew, renewal and reattestation code.

const simBuild = "build-sim-1"

type simPolicy struct{ pred measure.Prediction }

func (p simPolicy) Expected(string, string) (string, measure.Prediction, error) {
	return simBuild, p.pred, nil
}

// simEnv is a hub and a simulated node that may enroll with it.
type simEnv struct {
	// hubAhead shifts the hub's clock (its certificates' validity) from
	// the real one.
	hubAhead atomic.Int64
	ca       *pki.CA
	hub      *hub.Hub
	addr     string
	node     *attesttest.SimulatedNode
	cfg      EnrollConfig
}

var simAdmin = pki.Peer{Name: "ops", Role: pki.RoleAdmin}

func newSimEnv(t *testing.T) *simEnv {
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
	e := &simEnv{ca: newTestCA(t, "kubedos test CA")}
	st, err := hub.Open(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if e.hub, err = hub.New(hub.Options{Store: st, CA: e.ca, Verifier: hub.AttestVerifier{}, Policy: simPolicy{pred}, AllowWindow: true,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.hubAhead.Load())) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.OpenWindow(context.Background(), simAdmin, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv, err := hub.NewServer(e.hub, e.ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-served })

	sim, err := simulator.GetWithFixedSeedInsecure(7)
	if err != nil {
		t.Fatal(err)
	}
	if e.node, err = attesttest.NewNode(sim, attesttest.Boot{Measured: events, Words: measure.PhaseReady.Words}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.node.Close() })
	e.cfg = EnrollConfig{Hub: e.addr, CA: e.ca.Certificate(), Name: "w-1", Role: "worker", BuildID: simBuild,
		OpenProver: e.node.NewProver, StateDir: filepath.Join(t.TempDir(), "identity")}
	return e
}

// enroll runs the agent's Enroll against the hub.
func (e *simEnv) enroll(t *testing.T) *Enrolled {
	t.Helper()
	got, err := Enroll(context.Background(), e.cfg, t.Logf)
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	return got
}

// TestEnrollAndRenewWithSimulator: enrollment writes a key, a certificate
// for the node's name from the cluster CA, and the AK; a renewal quotes
// with that AK and gets a new certificate on a new key.
func TestEnrollAndRenewWithSimulator(t *testing.T) {
	e := newSimEnv(t)
	got := e.enroll(t)
	if got.Certificate.Subject.CommonName != "w-1" || got.Certificate.CheckSignatureFrom(e.ca.Certificate()) != nil {
		t.Errorf("enrolled certificate %v", got.Certificate.Subject)
	}
	for _, f := range []string{NodeKeyFile, NodeCertFile, AKFile} {
		if _, err := os.Stat(filepath.Join(e.cfg.StateDir, f)); err != nil {
			t.Errorf("after enrollment: %v", err)
		}
	}
	if st, _ := os.Stat(filepath.Join(e.cfg.StateDir, NodeKeyFile)); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("node.key mode: %v", st)
	}
	n, err := e.hub.GetNode(context.Background(), simAdmin, "w-1")
	if err != nil || n.State != "enrolled" {
		t.Errorf("hub has node %+v, %v", n, err)
	}
	keyBefore, _ := os.ReadFile(filepath.Join(e.cfg.StateDir, NodeKeyFile))

	renewed, err := Renew(context.Background(), e.cfg)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if renewed.Certificate.SerialNumber.Cmp(got.Certificate.SerialNumber) == 0 {
		t.Error("renewal kept the serial")
	}
	if keyAfter, _ := os.ReadFile(filepath.Join(e.cfg.StateDir, NodeKeyFile)); string(keyAfter) == string(keyBefore) {
		t.Error("renewal kept the key")
	}
	if _, err := e.cfg.identity(); err != nil {
		t.Errorf("identity after renewal: %v", err)
	}
}

// TestEnrollRefusedForAnotherBoot: a TPM whose PCRs are not the build's
// prediction is refused, and the refusal is final (no retry).
func TestEnrollRefusedForAnotherBoot(t *testing.T) {
	e := newSimEnv(t)
	if err := attesttest.ExtendWords(e.node.TPM, "tampered"); err != nil {
		t.Fatal(err)
	}
	_, err := Enroll(context.Background(), e.cfg, t.Logf)
	if err == nil || !final(err) {
		t.Fatalf("enroll with another PCR 11: %v, want a final refusal", err)
	}
	if _, serr := os.Stat(filepath.Join(e.cfg.StateDir, NodeCertFile)); !os.IsNotExist(serr) {
		t.Errorf("a refused node has a certificate: %v", serr)
	}
}

// TestRenewalControllerWithFakeClock: the renewal controller sleeps until
// two thirds of the certificate's life (fake clock), renews, and sleeps
// again; once the hub revokes the node its next renewal is a fatal error.
func TestRenewalControllerWithFakeClock(t *testing.T) {
	e := newSimEnv(t)
	// Enrolled 20 hours ago (by the hub's clock), renewed now: the node's
	// fake clock and the hub's agree without anyone sleeping.
	e.hubAhead.Store(int64(-20 * time.Hour))
	first := e.enroll(t)
	e.hubAhead.Store(0)
	clock := newFakeClock()
	clock.now = first.Certificate.NotBefore
	r := renewal{cfg: e.cfg, clock: clock, logf: t.Logf}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()

	clock.awaitWaiters(t, 1)
	clock.Advance(RenewAt(first.Certificate).Sub(clock.Now()) - time.Second)
	if cur := currentSerial(t, e.cfg); cur.Cmp(first.Certificate.SerialNumber) != 0 {
		t.Fatal("renewed before RenewAt")
	}
	clock.Advance(time.Second)
	clock.awaitWaiters(t, 1) // renewed, sleeping until the next RenewAt
	second := currentSerial(t, e.cfg)
	if second.Cmp(first.Certificate.SerialNumber) == 0 {
		t.Fatal("not renewed at RenewAt")
	}
	clock.Advance(time.Hour)
	if cur := currentSerial(t, e.cfg); cur.Cmp(second) != 0 || clock.Waiting() != 1 {
		t.Fatal("renewed again before the new certificate's RenewAt")
	}

	if err := e.hub.Revoke(context.Background(), simAdmin, "w-1", "test: retired"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(48 * time.Hour)
	err := <-done
	if !errors.As(err, new(fatalError)) {
		t.Errorf("renewal of a revoked node: %v, want a fatal error", err)
	}
}

// TestBootCheckAfterReattestation: a trial boot is blessed once the
// reattestation controller proved this boot to the hub and health passes;
// a node the hub refuses is rebooted to count the try down.
func TestBootCheckAfterReattestation(t *testing.T) {
	e := newSimEnv(t)
	e.enroll(t)
	healthy := func(context.Context) api.Health {
		return api.Health{Healthy: true, SystemState: "running", Checks: []api.HealthCheck{{Name: "systemd", OK: true, Critical: true}}}
	}
	run := func(t *testing.T) (*fakeSlots, chan struct{}, error) {
		att := &attestation{}
		att.set(errors.New("not yet re-attested in this boot"))
		if err := (reattestation{cfg: e.cfg, att: att, logf: t.Logf}).Run(context.Background()); err != nil {
			t.Fatalf("reattestation: %v", err)
		}
		slots := &fakeSlots{state: api.BootState{Entry: "kubedos-b+2-1.efi", Trial: true}}
		rebooted := make(chan struct{}, 1)
		state := t.TempDir()
		check := BootCheck{Slots: slots, Health: healthy, Attested: att.get, Timeout: time.Minute, StateDir: state,
			Logf: t.Logf, Clock: newFakeClock(), GoodFile: filepath.Join(state, "boot-good"), Console: func(l string) { t.Log(l) },
			Reboot: func(context.Context) error { rebooted <- struct{}{}; return nil }}
		return slots, rebooted, check.Run(context.Background())
	}

	slots, rebooted, err := run(t)
	if err != nil || slots.blessed != 1 || len(rebooted) != 0 {
		t.Errorf("attested, healthy trial boot: err %v, blessed %d, rebooted %d", err, slots.blessed, len(rebooted))
	}

	if err := e.hub.Revoke(context.Background(), simAdmin, "w-1", "test: retired"); err != nil {
		t.Fatal(err)
	}
	slots, rebooted, err = run(t)
	if err != nil || slots.blessed != 0 || len(rebooted) != 1 {
		t.Errorf("refused trial boot: err %v, blessed %d, rebooted %d", err, slots.blessed, len(rebooted))
	}
}

// TestBootCheckTimesOut: a trial boot never healthy is rebooted once the
// timeout passes on the (fake) clock, with the reason kept on state.
func TestBootCheckTimesOut(t *testing.T) {
	clock := newFakeClock()
	slots := &fakeSlots{state: api.BootState{Entry: "kubedos-b+2-1.efi", Trial: true}}
	state := t.TempDir()
	rebooted := make(chan struct{}, 1)
	starting := func(context.Context) api.Health {
		return api.Health{SystemState: "starting", Checks: []api.HealthCheck{{Name: "systemd", Critical: true, Detail: "systemd is starting"}}}
	}
	check := BootCheck{Slots: slots, Health: starting, Attested: func() error { return nil }, Timeout: time.Minute, StateDir: state,
		Logf: t.Logf, Clock: clock, GoodFile: filepath.Join(state, "boot-good"), Console: func(l string) { t.Log(l) },
		Reboot: func(context.Context) error { rebooted <- struct{}{}; return nil }}
	done := make(chan error, 1)
	go func() { done <- check.Run(context.Background()) }()
	for range 20 { // 20 polls of 3 s: the minute
		clock.awaitWaiters(t, 1)
		if len(rebooted) != 0 {
			t.Fatal("rebooted before the timeout")
		}
		clock.Advance(3 * time.Second)
	}
	clock.Advance(time.Second)
	if err := <-done; err != nil || len(rebooted) != 1 || slots.blessed != 0 {
		t.Errorf("timed-out trial boot: err %v, rebooted %d, blessed %d", err, len(rebooted), slots.blessed)
	}
	if b, _ := os.ReadFile(filepath.Join(state, BootCheckFile)); !strings.Contains(string(b), "systemd is starting") {
		t.Errorf("%s: %q", BootCheckFile, b)
	}
}

type fakeSlots struct {
	state   api.BootState
	blessed int
}

func (f *fakeSlots) State() *api.BootState { s := f.state; return &s }
func (f *fakeSlots) Bless() (string, error) {
	f.blessed++
	return strings.Replace(f.state.Entry, "+2-1", "", 1), nil
}

func currentSerial(t *testing.T, cfg EnrollConfig) *big.Int {
	t.Helper()
	pair, err := cfg.identity()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber
}
