package tpmseal

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseSignatures: the signature file comes from the UKI by way of the
// initrd; whatever it holds, parsing ends in a result or ErrInput, and what
// parses survives a round trip.
func FuzzParseSignatures(f *testing.F) {
	f.Add([]byte(`{"sha256":[{"pcrs":[11],"pkfp":"00","pol":"` + strings.Repeat("0", 64) + `","sig":"` + strings.Repeat("A", 344) + `"}]}`))
	f.Add([]byte(`{"sha256":[]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := ParseSignatures(raw)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("error without ErrInput: %v", err)
			}
			return
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseSignatures(b)
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, s, back)
		}
	})
}
