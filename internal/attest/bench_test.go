package attest_test

import (
	"testing"

	. "github.com/kubedos/kubedos/internal/attest"
)

// BenchmarkVerifyEvidence is the hub's verification of one node's evidence:
// quote signature (RSA-2048 AK), nonce, PCR digest, parse and replay of the
// real OVMF event log (39 events, 7 KiB), Secure Boot, comparison with the
// signed prediction. One op is one VerifyEvidence.
func BenchmarkVerifyEvidence(b *testing.B) {
	q := sharedGoodQuote(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := VerifyEvidence(q.ev, q.in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkVerifyEvidenceParallel runs VerifyEvidence on every core
// (GOMAXPROCS goroutines), the hub's throughput.
func BenchmarkVerifyEvidenceParallel(b *testing.B) {
	q := sharedGoodQuote(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := VerifyEvidence(q.ev, q.in); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}
