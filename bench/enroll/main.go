// Command enroll is a LOAD GENERATOR for the hub's enrollment gate, for the
// benchmark figures of docs/benchmarks.md. It is not part of kubedos.
//
// The hub side is the real code, in process (no gRPC): hub.Hub over a real
// bbolt hub.Store in a fresh directory, with hub.AttestVerifier
// (internal/attest: credential activation, quote signature and nonce, event
// log replay, Secure Boot, PCR 4/7/11 against the prediction) and the
// cluster CA signing each node's CSR. The node side is simulated: each
// enrollment is a new machine, a go-tpm-tools TPM simulator started with
// its own seed (its own EK) whose PCRs hold the recorded real OVMF boot of
// internal/measure/testdata/proto (39 events, 7 KiB of event log), with a
// fresh AK, a fresh P-256 key and CSR; the prediction is measure.Predict's
// for that boot's artifacts. The simulator is one per process, so the
// simulated TPMs run in worker processes (this command re-executed), one
// per concurrent enrollment, reused from one machine to the next.
//
// Each enrollment's EK is admitted by the open enrollment window (or, with
// -ek-policy registered, registered by an operator call before it begins).
// Timings per enrollment: hub-side, the sum of the three hub calls
// (BeginEnrollment, CompleteActivation, Enroll), waiting for bbolt's single
// writer included; end to end, from starting the node's TPM to holding a
// certificate that chains to the CA, most of it the simulated TPM making
// RSA keys (EK, SRK, AK). After the run it checks every node is enrolled
// with one certificate and the audit chain verifies.
//
// Usage: go run ./bench/enroll [-n 10000] [-c 4] [-ek-policy window|registered]
// (from the repository root).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
)

// workerFlag runs the command as a simulator worker (internal).
const workerFlag = "simulator-worker"

const (
	role    = "worker"
	buildID = "bench-build-worker"
)

type config struct {
	n           int
	concurrency int
	ekPolicy    string
	protoDir    string
	stateDir    string
	keep        bool
	seed        int64
}

func main() {
	var cfg config
	worker := flag.Bool(workerFlag, false, "internal: serve a TPM simulator on stdin/stdout")
	flag.IntVar(&cfg.n, "n", 10000, "enrollments (each a new simulated machine)")
	flag.IntVar(&cfg.concurrency, "c", 4, "concurrent enrollments (= simulator worker processes), 1–64")
	flag.StringVar(&cfg.ekPolicy, "ek-policy", "window", "how EKs are admitted: window (an open enrollment window) or registered (an operator registers each EK first)")
	flag.StringVar(&cfg.protoDir, "proto", attesttest.RecordedBootDir, "recorded boot: event log and the artifacts' facts")
	flag.StringVar(&cfg.stateDir, "state", "", "directory for the hub's bbolt file (default: a new temporary directory)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the hub state afterwards")
	flag.Int64Var(&cfg.seed, "seed", 1_000_000, "seed of the first machine's TPM; machine i has seed+i")
	flag.Parse()
	if *worker {
		if err := serveSimulator(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "simulator worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "enroll:", err)
		os.Exit(1)
	}
}

// policy is the spec and manifest of the load: nodes node-NNNNN of role
// worker must run buildID, predicted as the recorded boot.
type policy struct{ pred measure.Prediction }

func (p policy) Expected(name, r string) (string, measure.Prediction, error) {
	if !strings.HasPrefix(name, "node-") || r != role {
		return "", measure.Prediction{}, fmt.Errorf("no node %s with role %s", name, r)
	}
	return buildID, p.pred, nil
}

// timing is one enrollment's measurements.
type timing struct {
	err                                      error
	begin, activate, enroll, register, total time.Duration
}

func (t timing) hub() time.Duration { return t.begin + t.activate + t.enroll }

var operator = pki.Peer{Name: "bench", Role: pki.RoleAdmin}

func run(ctx context.Context, cfg config) error {
	if cfg.n < 1 || cfg.concurrency < 1 || cfg.concurrency > 64 {
		return fmt.Errorf("-n %d -c %d: want n ≥ 1 and 1 ≤ c ≤ 64", cfg.n, cfg.concurrency)
	}
	if cfg.ekPolicy != "window" && cfg.ekPolicy != "registered" {
		return fmt.Errorf("-ek-policy %q: want window or registered", cfg.ekPolicy)
	}
	pred, err := attesttest.RecordedPrediction(cfg.protoDir, nil)
	if err != nil {
		return fmt.Errorf("%w (run from the repository root or give -proto)", err)
	}
	events, err := attesttest.RecordedEvents(cfg.protoDir)
	if err != nil {
		return err
	}
	boot := attesttest.Boot{Measured: events, Words: measure.PhaseReady.Words}

	dir := cfg.stateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kubedos-bench-enroll-"); err != nil {
			return err
		}
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	path := filepath.Join(dir, "hub.db")
	st, err := hub.Open(path)
	if err != nil {
		return err
	}
	defer st.Close()
	ca, err := newCA()
	if err != nil {
		return err
	}
	h, err := hub.New(hub.Options{Store: st, CA: ca, Verifier: hub.AttestVerifier{}, Policy: policy{pred},
		AllowWindow: cfg.ekPolicy == "window"})
	if err != nil {
		return err
	}
	if cfg.ekPolicy == "window" {
		if _, err := h.OpenWindow(ctx, operator, hub.DefaultMaxWindow); err != nil {
			return err
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())

	fmt.Printf("LOAD GENERATOR (bench/enroll): %d simulated enrollments against the real hub code, in process (no gRPC)\n", cfg.n)
	fmt.Printf("  hub: hub.Hub + bbolt Store at %s + hub.AttestVerifier; EK policy %s\n", path, cfg.ekPolicy)
	fmt.Printf("  nodes: one go-tpm-tools simulator per machine (new seed = new EK, fresh RSA AK), %d worker processes, concurrency %d\n", cfg.concurrency, cfg.concurrency)
	fmt.Printf("  evidence: recorded OVMF boot (%d events, %d bytes of log), quote of PCR 4, 7, 11 at phase %q\n", len(events), mustLogSize(events), measure.PhaseReady.Name)
	fmt.Printf("  machine: %d CPUs, GOMAXPROCS %d, %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())

	procs := make([]*simProcess, cfg.concurrency)
	for i := range procs {
		if procs[i], err = startSimProcess(); err != nil {
			for _, p := range procs[:i] {
				p.Close()
			}
			return err
		}
	}
	results := make([]timing, cfg.n)
	jobs := make(chan int)
	var (
		wg   sync.WaitGroup
		done atomic.Int64
	)
	start := time.Now()
	for _, sp := range procs {
		wg.Go(func() {
			for i := range jobs {
				results[i] = enrollOne(ctx, h, sp, boot, roots, cfg, i)
				if d := done.Add(1); d%1000 == 0 {
					fmt.Fprintf(os.Stderr, "  %d/%d after %s\n", d, cfg.n, time.Since(start).Round(time.Second))
				}
			}
		})
	}
	for i := range cfg.n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	wall := time.Since(start)
	for _, p := range procs {
		if err := p.Close(); err != nil {
			return fmt.Errorf("simulator worker: %w", err)
		}
	}
	return report(st, cfg, results, wall)
}

// enrollOne is machine i: a fresh TPM with the recorded boot, its node
// side of the protocol, and the hub's three calls.
func enrollOne(ctx context.Context, h *hub.Hub, sp *simProcess, boot attesttest.Boot, roots *x509.CertPool, cfg config, i int) (t timing) {
	name := fmt.Sprintf("node-%05d", i)
	t0 := time.Now()
	defer func() {
		t.total = time.Since(t0)
		if t.err != nil {
			t.err = fmt.Errorf("%s: %w", name, t.err)
		}
	}()
	if t.err = sp.Reset(cfg.seed + int64(i)); t.err != nil {
		return t
	}
	node, err := attesttest.NewNode(attesttest.NoClose(sp), boot)
	if err != nil {
		t.err = err
		return t
	}
	defer node.Close() // unloads the AK; the worker's TPM stays up
	p := node.Prover
	id, err := p.Identity()
	if err != nil {
		t.err = err
		return t
	}
	if cfg.ekPolicy == "registered" {
		s := time.Now()
		if t.err = h.RegisterEK(ctx, operator, name, attest.EKHash(id.EKPublic)); t.err != nil {
			return t
		}
		t.register = time.Since(s)
	}

	s := time.Now()
	begun, err := h.BeginEnrollment(ctx, hub.BeginRequest{Name: name, Role: role, Identity: hub.TPMIdentity{
		EKPublic: id.EKPublic, EKCertificate: id.EKCertificate, AK: hub.AKParameters(id.AK)}})
	t.begin = time.Since(s)
	if err != nil {
		t.err = fmt.Errorf("begin: %w", err)
		return t
	}
	secret, err := p.ActivateCredential(attest.Challenge(begun.Challenge))
	if err != nil {
		t.err = err
		return t
	}
	s = time.Now()
	nonce, err := h.CompleteActivation(ctx, begun.Session, secret)
	t.activate = time.Since(s)
	if err != nil {
		t.err = fmt.Errorf("activate: %w", err)
		return t
	}
	ev, err := p.Quote(nonce.Value, attest.DefaultPCRs)
	if err != nil {
		t.err = err
		return t
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.err = err
		return t
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		t.err = err
		return t
	}
	s = time.Now()
	got, err := h.Enroll(ctx, hub.EnrollRequest{Session: begun.Session, Nonce: nonce.Value, Evidence: hub.Evidence(ev), BuildID: buildID, CSR: csr})
	t.enroll = time.Since(s)
	if err != nil {
		t.err = fmt.Errorf("enroll: %w", err)
		return t
	}
	if _, err := got.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.err = fmt.Errorf("certificate: %w", err)
	}
	return t
}

func report(st *hub.Store, cfg config, results []timing, wall time.Duration) error {
	var errs []error
	var hubT, total, begin, activate, enroll, register []time.Duration
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		hubT, total = append(hubT, r.hub()), append(total, r.total)
		begin, activate, enroll = append(begin, r.begin), append(activate, r.activate), append(enroll, r.enroll)
		register = append(register, r.register)
	}
	ok := len(results) - len(errs)
	var hubSum time.Duration
	for _, d := range hubT {
		hubSum += d
	}
	fmt.Printf("\nresults\n")
	fmt.Printf("  enrollments        %d ok, %d errors\n", ok, len(errs))
	fmt.Printf("  total time         %s\n", wall.Round(time.Millisecond))
	fmt.Printf("  enrollments/s      %.1f (end to end, bounded by the simulated TPMs)\n", float64(ok)/wall.Seconds())
	fmt.Printf("  latency            p50        p90        p99        max\n")
	line := func(what string, ds []time.Duration) {
		fmt.Printf("  %-18s %-10s %-10s %-10s %s\n", what, pct(ds, 50), pct(ds, 90), pct(ds, 99), pct(ds, 100))
	}
	line("end to end", total)
	line("hub-side", hubT)
	line("  BeginEnrollment", begin)
	line("  CompleteActivat.", activate)
	line("  Enroll", enroll)
	if cfg.ekPolicy == "registered" {
		line("  RegisterEK", register)
	}
	if ok > 0 {
		fmt.Printf("  hub time per enrollment, mean %s (the simulated TPMs load both cores meanwhile)\n", (hubSum / time.Duration(ok)).Round(time.Microsecond))
	}

	// The state the load left: every node enrolled once, the audit whole.
	nodes, err := st.Nodes()
	if err != nil {
		return err
	}
	enrolled := 0
	for _, n := range nodes {
		if n.State == hub.StateEnrolled && len(n.Certs) == 1 && n.CertSerial == n.Certs[0].Serial {
			enrolled++
		}
	}
	head, err := st.VerifyAuditChain()
	fmt.Printf("  hub state          %d nodes enrolled with one certificate each; audit chain of %d entries: %v\n", enrolled, head.Seq, okOr(err))
	if fi, err := os.Stat(st.Path()); err == nil {
		fmt.Printf("  bbolt file         %.1f MiB\n", float64(fi.Size())/(1<<20))
	}
	for i, e := range errs {
		if i == 10 {
			fmt.Printf("  … %d more errors\n", len(errs)-10)
			break
		}
		fmt.Printf("  error: %v\n", e)
	}
	switch {
	case err != nil:
		return err
	case len(errs) > 0:
		return fmt.Errorf("%d of %d enrollments failed", len(errs), len(results))
	case enrolled != len(results):
		return fmt.Errorf("%d nodes enrolled, want %d", enrolled, len(results))
	}
	return nil
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i, 1), len(s)) - 1
	return s[i].Round(10 * time.Microsecond).String()
}

func okOr(err error) string {
	if err != nil {
		return err.Error()
	}
	return "verified"
}

func mustLogSize(events []attesttest.Event) int {
	log, err := attesttest.EncodeTCGLog(events)
	if err != nil {
		return 0
	}
	return len(log)
}

// newCA makes a cluster CA shaped like the key ceremony's (P-256, path
// length 0), in memory.
func newCA() (*pki.CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubedos bench CA", Organization: []string{"kubedos"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return pki.NewCA(cert, key)
}
