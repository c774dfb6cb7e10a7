package attest_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	. "github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/measure"
)

// wire round-trips v through JSON and the strict decoder, as the transport
// will.
func wire[T any](t *testing.T, v T, decode func([]byte) (T, error)) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A node that booted the predicted image enrolls: identity, EK policy,
// credential activation, quote over the nonce, verification; each message
// crosses the wire as JSON.
func TestEnrollGood(t *testing.T) {
	pred := protoPrediction(t, nil)
	for _, tc := range []struct {
		name      string
		words     []string // systemd-pcrphase words extended after the boot
		wantPhase string
	}{
		{"initrd (stub phase)", nil, "stub"},
		{"multi-user (ready phase)", []string{"sysinit", "ready"}, "ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			boot := ovmfEvents(t)
			n := bootNode(t, seedNode, boot, boot)
			pcrPhase(t, n.sim, tc.words...)

			id := wire(t, n.id, DecodeIdentity)
			if len(id.EKCertificate) != 0 {
				t.Errorf("simulator without an EK certificate in NV: identity has one")
			}
			how, err := AdmitEK(id, EKPolicy{Registered: []string{EKHash(id.EKPublic)}})
			if err != nil || how != EKRegistered {
				t.Fatalf("AdmitEK = %q, %v", how, err)
			}
			ch, secret, err := NewChallenge(id)
			if err != nil {
				t.Fatal(err)
			}
			answer, err := n.prover.ActivateCredential(wire(t, ch, DecodeChallenge))
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyActivation(secret, answer); err != nil {
				t.Fatal(err)
			}

			nonce, err := NewNonce()
			if err != nil {
				t.Fatal(err)
			}
			ev, err := n.prover.Quote(nonce, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := VerifyEvidence(wire(t, ev, DecodeEvidence), VerifyInput{AKPublic: id.AK.Public, Nonce: nonce, Prediction: pred})
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != tc.wantPhase || res.Events != 39 || len(res.PCRs) != 3 {
				t.Errorf("result = phase %q, %d events, PCRs %v", res.Phase, res.Events, res.PCRs)
			}
			p4, _ := pred.PCR(4)
			if res.PCRs[4].String() != p4.Value.String() {
				t.Errorf("PCR 4 = %s, want %s", res.PCRs[4], p4.Value)
			}
		})
	}
}

// assertRefused checks that err is a *Refusal for check whose detail
// mentions each of details.
func assertRefused(t *testing.T, err error, check Check, details ...string) *Refusal {
	t.Helper()
	r, ok := AsRefusal(err)
	if !ok {
		t.Fatalf("error %v is no refusal, want %s", err, check)
	}
	if r.Check != check || !errors.Is(err, check.Err()) || !errors.Is(err, ErrRefused) || errdefs.Class(err) != errdefs.ErrPermission {
		t.Fatalf("refused by %s (%v), want %s", r.Check, err, check)
	}
	for _, d := range details {
		if !strings.Contains(r.Detail, d) {
			t.Errorf("detail %q does not mention %q", r.Detail, d)
		}
	}
	for _, other := range Checks {
		if other != check && errors.Is(err, other.Err()) {
			t.Errorf("%s refusal also matches %s", check, other)
		}
	}
	return r
}

// Each way a node's evidence can be wrong is refused by its own check.
func TestVerifyEvidenceRefusals(t *testing.T) {
	pred := protoPrediction(t, nil)
	other := protoPrediction(t, []byte("root=PARTUUID=another-node ro quiet"))
	good := ovmfEvents(t)
	uki := indexOf(t, good, 4, measure.EvEFIBootServicesApplication, 1)
	stubCmdline := indexOf(t, good, 11, measure.EvIPL, 5) // .cmdline contents
	bad := make([]byte, measure.DigestSize)
	bad[0] = 0xba

	for _, tc := range []struct {
		name             string
		measured, served []attesttest.Event
		// tamper changes the evidence or the hub's input after a good quote.
		tamper  func(t *testing.T, n *node, ev *Evidence, in *VerifyInput)
		check   Check
		details []string
	}{
		{
			name: "wrong nonce", measured: good, served: good,
			tamper: func(t *testing.T, _ *node, _ *Evidence, in *VerifyInput) {
				in.Nonce, _ = NewNonce()
			},
			check: CheckNonce, details: []string{"is not the issued nonce"},
		},
		{
			name: "quote signed by another AK", measured: good, served: good,
			tamper: func(t *testing.T, n *node, ev *Evidence, in *VerifyInput) {
				// A second AK in the same TPM signs the quote; the hub
				// holds the first (enrolled) AK.
				p2, err := NewProver(attesttest.NoClose(n.sim), encodeTCGLog(t, good))
				if err != nil {
					t.Fatal(err)
				}
				defer p2.Close()
				if _, err := p2.Identity(); err != nil {
					t.Fatal(err)
				}
				if *ev, err = p2.Quote(in.Nonce, nil); err != nil {
					t.Fatal(err)
				}
			},
			check: CheckQuoteSignature, details: []string{"does not verify with the enrolled AK"},
		},
		{
			name: "PCR values not the quoted ones", measured: good, served: good,
			tamper: func(t *testing.T, _ *node, ev *Evidence, _ *VerifyInput) {
				p4, _ := pred.PCR(4)
				ev.PCRs[7] = p4.Value
			},
			check: CheckQuoteSignature, details: []string{"are not the quoted ones"},
		},
		{
			name: "quote leaves out PCR 11", measured: good, served: good,
			tamper: func(t *testing.T, n *node, ev *Evidence, in *VerifyInput) {
				var err error
				if *ev, err = n.prover.Quote(in.Nonce, []int{4, 7}); err != nil {
					t.Fatal(err)
				}
			},
			check: CheckPCRPolicy, details: []string{"does not cover PCR [11]"},
		},
		{
			name: "event log does not replay (PCR 4)", measured: good, served: withDigest(good, uki, bad),
			check: CheckEventLogReplay, details: []string{"PCR 4: quoted"},
		},
		{
			name: "event log does not replay (PCR 11)", measured: good, served: withDigest(good, stubCmdline, bad),
			check: CheckEventLogReplay, details: []string{"PCR 11 is quoted as"},
		},
		{
			name: "event log garbage", measured: good, served: good,
			tamper: func(t *testing.T, _ *node, ev *Evidence, _ *VerifyInput) {
				ev.EventLog = ev.EventLog[:len(ev.EventLog)-7]
			},
			check: CheckEventLogReplay, details: []string{"parse"},
		},
		{
			name: "PCR 7 with Secure Boot off", measured: secureBootOff(good), served: secureBootOff(good),
			check: CheckSecureBoot, details: []string{"SecureBoot = 00", "log event 4"},
		},
		{
			name: "PCR 11 of another UKI", measured: withPCR11Of(t, good, other), served: withPCR11Of(t, good, other),
			check: CheckPCRPolicy, details: []string{"PCR 11 event 5 (log event 33)", "PCR 11 value"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := bootNode(t, seedNode, tc.measured, tc.served)
			activate(t, n)
			ev, in := quote(t, n, pred)
			if tc.tamper != nil {
				tc.tamper(t, n, &ev, &in)
			}
			_, err := VerifyEvidence(ev, in)
			r := assertRefused(t, err, tc.check, tc.details...)
			t.Logf("%s: %s", r.Check, r.Detail)
			if tc.check == CheckPCRPolicy && len(r.Mismatches) > 0 {
				for _, m := range r.Mismatches {
					if m.PCR != 11 {
						t.Errorf("mismatch outside PCR 11: %v", m)
					}
				}
				if !errors.Is(err, measure.ErrMismatch) {
					t.Errorf("pcr-policy refusal does not wrap measure.ErrMismatch")
				}
			}
		})
	}
}

// VerifyEvidence keeps no state: the same evidence verifies twice. Refusing a
// reused nonce (and an expired one) is the hub's job, which spends each
// nonce once; it is tested there, not here.
func TestVerifyEvidenceIsStateless(t *testing.T) {
	q := sharedGoodQuote(t)
	for i := range 2 {
		if _, err := VerifyEvidence(q.ev, q.in); err != nil {
			t.Fatalf("verification %d: %v", i, err)
		}
	}
}

// A Prover serialises TPM commands: concurrent quotes all verify.
func TestProverConcurrentQuotes(t *testing.T) {
	pred := protoPrediction(t, nil)
	boot := ovmfEvents(t)
	n := bootNode(t, seedNode, boot, boot)
	activate(t, n)
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			nonce, err := NewNonce()
			if err != nil {
				errs <- err
				return
			}
			ev, err := n.prover.Quote(nonce, nil)
			if err != nil {
				errs <- err
				return
			}
			_, err = VerifyEvidence(ev, VerifyInput{AKPublic: n.id.AK.Public, Nonce: nonce, Prediction: pred})
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// The Prover refuses misuse before touching the TPM.
func TestProverMisuse(t *testing.T) {
	boot := ovmfEvents(t)
	sim := simTPM(t, seedNode)
	p, err := NewProver(sim, encodeTCGLog(t, boot))
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := NewNonce()
	if _, err := p.Quote(nonce, nil); !errors.Is(err, ErrProver) || !strings.Contains(err.Error(), "call Identity first") {
		t.Errorf("quote before Identity: %v", err)
	}
	if _, err := p.Identity(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		nonce []byte
		pcrs  []int
		want  string
	}{
		{nonce, []int{4, 4}, "distinct"},
		{nonce, []int{24}, "distinct indexes 0–23"},
		{nil, nil, "nonce of 0 bytes"},
		{make([]byte, MaxNonceSize+1), nil, "nonce of 65 bytes"},
	} {
		if _, err := p.Quote(tc.nonce, tc.pcrs); !errors.Is(err, ErrProver) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Quote(%d-byte nonce, %v) = %v, want %q", len(tc.nonce), tc.pcrs, err, tc.want)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Identity(); !errors.Is(err, ErrProver) {
		t.Errorf("Identity after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
