package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm-tools/simulator"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/measure"
)

// predPolicy: every node of role worker must run build-worker, predicted
// as pred.
type predPolicy struct{ pred measure.Prediction }

func (p predPolicy) Expected(name, role string) (string, measure.Prediction, error) {
	if role != "worker" {
		return "", measure.Prediction{}, fmt.Errorf("no node %s with role %s", name, role)
	}
	return "build-worker", p.pred, nil
}

// BenchmarkHubEnroll is the hub's share of one node's enrollment with the
// real parts: BeginEnrollment, CompleteActivation and Enroll on a Hub over a
// bbolt Store (fsync on each commit) with AttestVerifier, the recorded OVMF
// boot's event log (39 events, 7 KiB) and its prediction, and the CA signing
// the CSR. One op is one new node (EK admitted by the open window). The
// node's side, a fresh simulated TPM per op making its EK and AK,
// activating the credential and quoting, and its CSR, runs with the timer
// stopped (about 0.1 s per op: use -benchtime 200x).
func BenchmarkHubEnroll(b *testing.B) {
	dir := filepath.Join("..", "..", attesttest.RecordedBootDir)
	pred, err := attesttest.RecordedPrediction(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	events, err := attesttest.RecordedEvents(dir)
	if err != nil {
		b.Fatal(err)
	}
	st, err := Open(filepath.Join(b.TempDir(), "hub.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h, err := New(Options{Store: st, CA: newCA(b), Verifier: AttestVerifier{}, Policy: predPolicy{pred}, AllowWindow: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.OpenWindow(ctx, admin, DefaultMaxWindow); err != nil {
		b.Fatal(err)
	}
	boot := attesttest.Boot{Measured: events, Words: measure.PhaseReady.Words}

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := fmt.Sprintf("node-%06d", i)
		sim, err := simulator.GetWithFixedSeedInsecure(int64(1_000 + i))
		if err != nil {
			b.Fatal(err)
		}
		n, err := attesttest.NewNode(sim, boot)
		if err != nil {
			b.Fatal(err)
		}
		id, err := n.Prover.Identity()
		if err != nil {
			b.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		begun, err := h.BeginEnrollment(ctx, BeginRequest{Name: name, Role: "worker", Identity: TPMIdentity{
			EKPublic: id.EKPublic, EKCertificate: id.EKCertificate, AK: AKParameters(id.AK)}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		secret, err := n.Prover.ActivateCredential(attest.Challenge(begun.Challenge))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		nonce, err := h.CompleteActivation(ctx, begun.Session, secret)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ev, err := n.Prover.Quote(nonce.Value, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := h.Enroll(ctx, EnrollRequest{Session: begun.Session, Nonce: nonce.Value, Evidence: Evidence(ev), BuildID: "build-worker", CSR: csr}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enrollments/s")
}
