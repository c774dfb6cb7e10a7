package attest_test

import (
	"encoding/base64"
	"testing"

	. "github.com/kubedos/kubedos/internal/attest"
)

// The fuzz targets feed untrusted bytes through the hub's paths: decoding
// every wire struct, and the checks that follow. None may panic.

func FuzzDecodeIdentity(f *testing.F) {
	q := sharedGoodQuote(f)
	f.Add(q.idJSON)
	f.Add([]byte(`{"ekPublic":"AQ==","ak":{"public":"AQ==","createData":"AQ==","createAttestation":"AQ==","createSignature":"AQ=="}}`))
	f.Add([]byte(`{}`))
	ca := newTestCA(f, "fuzz CA")
	policy := EKPolicy{Registered: []string{EKHash(q.id.EKPublic)}, CAs: ca.pool()}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := DecodeIdentity(b)
		if err != nil {
			return
		}
		_, _, _ = NewChallenge(id)
		_, _ = AdmitEK(id, policy)
	})
}

func FuzzDecodeChallenge(f *testing.F) {
	q := sharedGoodQuote(f)
	ch, _, err := NewChallenge(q.id)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"credential":"` + b64(ch.Credential) + `","secret":"` + b64(ch.Secret) + `"}`))
	f.Add([]byte(`{"credential":"AQ=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeChallenge(b)
	})
}

func FuzzDecodeEvidence(f *testing.F) {
	q := sharedGoodQuote(f)
	f.Add(q.evJSON)
	f.Add([]byte(`{"quote":"AQ==","signature":"AQ==","pcrs":{"4":"` + hex32 + `"},"eventLog":"AQ=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvidence(b)
		if err != nil {
			return
		}
		_, _ = VerifyEvidence(ev, q.in)
	})
}

// FuzzVerifyEvidenceEventLog reaches the event log path behind a valid
// quote: parse, replay, Secure Boot, comparison with the prediction.
func FuzzVerifyEvidenceEventLog(f *testing.F) {
	q := sharedGoodQuote(f)
	good := ovmfEvents(f)
	f.Add(q.ev.EventLog)
	f.Add(q.ev.EventLog[:200])
	f.Add(encodeTCGLog(f, secureBootOff(good)))
	f.Add(encodeTCGLog(f, withPCR11Of(f, good, protoPrediction(f, []byte("other")))))
	f.Add(encodeTCGLog(f, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, log []byte) {
		ev := q.ev
		ev.EventLog = log
		_, _ = VerifyEvidence(ev, q.in)
	})
}

const hex32 = "0000000000000000000000000000000000000000000000000000000000000000"

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
