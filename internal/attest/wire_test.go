package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/measure"
)

func TestDecodeWire(t *testing.T) {
	d := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		in     string
		errs   []string // substrings of the error; none: valid
	}{
		{"identity", decodeAny(DecodeIdentity), `{"ekPublic":"AQ==","ak":{"public":"AQ==","createData":"AQ==","createAttestation":"AQ==","createSignature":"AQ=="}}`, nil},
		{"identity with every field missing", decodeAny(DecodeIdentity), `{}`,
			[]string{"identity.ekPublic: missing", "identity.ak.public: missing", "identity.ak.createData: missing", "identity.ak.createAttestation: missing", "identity.ak.createSignature: missing"}},
		{"identity with an unknown field", decodeAny(DecodeIdentity), `{"ekPublic":"AQ==","ek":"x"}`, []string{`unknown field "ek"`}},
		{"identity twice", decodeAny(DecodeIdentity), `{} {}`, []string{"data after the JSON value"}},
		{"identity not base64", decodeAny(DecodeIdentity), `{"ekPublic":"!"}`, []string{"identity: illegal base64"}},
		{"challenge", decodeAny(DecodeChallenge), `{"credential":"AQ==","secret":"AQ=="}`, nil},
		{"challenge without secret", decodeAny(DecodeChallenge), `{"credential":"AQ=="}`, []string{"challenge.secret: missing"}},
		{"evidence", decodeAny(DecodeEvidence), `{"quote":"AQ==","signature":"AQ==","pcrs":{"4":"` + d + `","11":"` + d + `"},"eventLog":"AQ=="}`, nil},
		{"evidence with a bad PCR index", decodeAny(DecodeEvidence), `{"quote":"AQ==","signature":"AQ==","pcrs":{"24":"` + d + `","-1":"` + d + `"},"eventLog":"AQ=="}`,
			[]string{"PCR index -1 outside 0–23", "PCR index 24 outside"}},
		{"evidence with a short PCR value", decodeAny(DecodeEvidence), `{"quote":"AQ==","signature":"AQ==","pcrs":{"4":"abab"},"eventLog":"AQ=="}`, []string{`digest "abab": 2 bytes, want 32`}},
		{"evidence without anything", decodeAny(DecodeEvidence), `{"pcrs":{}}`,
			[]string{"evidence.quote: missing", "evidence.signature: missing", "evidence.eventLog: missing", "evidence.pcrs: missing"}},
		{"evidence not an object", decodeAny(DecodeEvidence), `[]`, []string{"cannot unmarshal array"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode([]byte(tc.in))
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	big := bytes.Repeat([]byte{' '}, MaxMessageSize+1)
	if _, err := DecodeEvidence(big); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversized message: %v", err)
	}
	ev := Evidence{Quote: []byte{1}, Signature: []byte{1}, PCRs: map[int]measure.Digest{4: make([]byte, 32)}, EventLog: make([]byte, MaxEventLogSize+1)}
	if err := ev.Validate(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "evidence.eventLog") {
		t.Errorf("oversized event log: %v", err)
	}
}

func decodeAny[T any](f func([]byte) (T, error)) func([]byte) error {
	return func(b []byte) error { _, err := f(b); return err }
}

func TestNewNonce(t *testing.T) {
	a, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != NonceSize || bytes.Equal(a, b) {
		t.Errorf("nonces %x, %x", a, b)
	}
}

func TestRefusal(t *testing.T) {
	cause := &measure.MismatchError{Mismatches: []measure.Mismatch{{PCR: 11, Index: -1, Want: "a", Got: "b"}}}
	for _, c := range Checks {
		t.Run(string(c), func(t *testing.T) {
			var err error = refuse(c, cause, "detail %d", 7)
			err = fmt.Errorf("enroll node w-1: %w", err)
			r, ok := AsRefusal(err)
			if !ok || r.Check != c || r.Detail != "detail 7" {
				t.Fatalf("AsRefusal = %+v, %v", r, ok)
			}
			if !errors.Is(err, c.Err()) || !errors.Is(err, ErrRefused) || !errors.Is(err, measure.ErrMismatch) {
				t.Errorf("errors.Is fails for %s", c)
			}
			for _, o := range Checks {
				if o != c && errors.Is(err, o.Err()) {
					t.Errorf("%s refusal matches %s", c, o)
				}
			}
			var me *measure.MismatchError
			if !errors.As(err, &me) {
				t.Error("cause not reachable with errors.As")
			}
			if want := "attestation refused: " + string(c) + ": detail 7"; !strings.HasSuffix(err.Error(), want) {
				t.Errorf("Error() = %q", err)
			}
		})
	}
	if Check("nope").Err() != nil {
		t.Error("unknown check has a sentinel")
	}
	// The quarantine record keeps check, detail and mismatches.
	r := refuse(CheckPCRPolicy, cause, "x")
	r.Mismatches = cause.Mismatches
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Refusal
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Check != r.Check || back.Detail != r.Detail || !reflect.DeepEqual(back.Mismatches, r.Mismatches) {
		t.Errorf("JSON round trip: %s -> %+v", b, back)
	}
	if !errors.Is(&back, ErrPCRPolicy) {
		t.Error("decoded refusal does not match its sentinel")
	}
}
