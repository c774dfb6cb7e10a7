package attesttest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/measure"
)

var protoDir = filepath.Join("..", "..", "..", attesttest.RecordedBootDir)

func TestEncodeTCGLogRoundTrip(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(protoDir, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	events, err := attesttest.RecordedEvents(protoDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := attesttest.EncodeTCGLog(events)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatalf("re-encoded OVMF log differs: %d bytes, want %d", len(got), len(raw))
	}
}

func TestEncodeTCGLogRefuses(t *testing.T) {
	d := make([]byte, measure.DigestSize)
	for _, tc := range []struct {
		ev   attesttest.Event
		want string
	}{
		{attesttest.Event{PCR: 4, Type: "EV_NOPE", Digest: d}, `unknown type "EV_NOPE"`},
		{attesttest.Event{PCR: 4, Type: measure.EvSeparator, Digest: d[:20]}, "digest of 20 bytes"},
		{attesttest.Event{PCR: 24, Type: measure.EvSeparator, Digest: d}, "PCR 24"},
	} {
		if _, err := attesttest.EncodeTCGLog([]attesttest.Event{tc.ev}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EncodeTCGLog(%+v) = %v, want %q", tc.ev, err, tc.want)
		}
	}
}

// enroll runs the node side and the hub's checks for one Prover.
func enroll(t *testing.T, p *attest.Prover, pred measure.Prediction) attest.Result {
	t.Helper()
	id, err := p.Identity()
	if err != nil {
		t.Fatal(err)
	}
	ch, secret, err := attest.NewChallenge(id)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := p.ActivateCredential(ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.VerifyActivation(secret, answer); err != nil {
		t.Fatal(err)
	}
	nonce, err := attest.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Quote(nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := attest.VerifyEvidence(ev, attest.VerifyInput{AKPublic: id.AK.Public, Nonce: nonce, Prediction: pred})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A node booted from a prediction passes every check of that prediction,
// at each boot phase, with its own Prover and with another Prover (a fresh
// AK) working at the same time over the same TPM.
func TestSimulatePredicted(t *testing.T) {
	pred, err := attesttest.RecordedPrediction(protoDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	events, err := attesttest.PredictedEvents(pred)
	if err != nil {
		t.Fatal(err)
	}
	for i, phase := range measure.BootPhases {
		t.Run(phase.Name, func(t *testing.T) {
			n, err := attesttest.Simulate(int64(100+i), pred, phase)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := n.Close(); err != nil {
					t.Error(err)
				}
			}()
			res := enroll(t, n.Prover, pred)
			if res.Phase != phase.Name || res.Events != len(events) {
				t.Errorf("verified at phase %q with %d events, want %q and %d", res.Phase, res.Events, phase.Name, len(events))
			}
			// Another Prover (a fresh AK) enrolls while the first quotes
			// again: the TPM channel is shared.
			var wg sync.WaitGroup
			wg.Go(func() {
				p, err := n.NewProver()
				if err != nil {
					t.Error(err)
					return
				}
				defer p.Close()
				if res := enroll(t, p, pred); res.Phase != phase.Name {
					t.Errorf("second prover: phase %q", res.Phase)
				}
			})
			for range 3 {
				if _, err := n.Prover.Quote([]byte("nonce"), nil); err != nil {
					t.Error(err)
				}
			}
			wg.Wait()
		})
	}
}

// The recorded OVMF log, measured into a simulator, verifies against the
// prediction of the recorded artifacts; another UKI's prediction refuses it.
func TestRecordedBoot(t *testing.T) {
	pred, err := attesttest.RecordedPrediction(protoDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	events, err := attesttest.RecordedEvents(protoDir)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simulator.GetWithFixedSeedInsecure(7)
	if err != nil {
		t.Fatal(err)
	}
	n, err := attesttest.NewNode(sim, attesttest.Boot{Measured: events, Words: measure.PhaseSysinit.Words})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if res := enroll(t, n.Prover, pred); res.Phase != "sysinit" || res.Events != 39 {
		t.Errorf("result %+v", res)
	}

	other, err := attesttest.RecordedPrediction(protoDir, []byte("root=PARTUUID=another ro"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := n.Prover.Identity()
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := attest.NewNonce()
	ev, err := n.Prover.Quote(nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = attest.VerifyEvidence(ev, attest.VerifyInput{AKPublic: id.AK.Public, Nonce: nonce, Prediction: other})
	if r, ok := attest.AsRefusal(err); !ok || r.Check != attest.CheckPCRPolicy {
		t.Fatalf("another UKI's prediction: %v, want a pcr-policy refusal", err)
	}
}
