package earlyboot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"
)

func testHeader() StateHeader {
	return StateHeader{Cipher: CipherAESXTS, DataOffset: StateDataOffset, DataSize: 63 << 20, PCRMask: 1 << 7,
		SealedKey: bytes.Repeat([]byte{0xa5}, 1200)}
}

func TestStateHeaderRoundTrip(t *testing.T) {
	for _, h := range []StateHeader{
		testHeader(),
		func() StateHeader { h := testHeader(); h.Flags = stateFlagFormatting; return h }(),
		func() StateHeader {
			h := testHeader()
			h.SealedKey = append([]byte("KDTPMS1\x00"), make([]byte, MaxSealedKey-8)...)
			h.PCRMask = 1<<7 | 1<<11
			return h
		}(),
		func() StateHeader {
			h := testHeader()
			h.SealedKey = []byte{1}
			h.DataOffset = StateHeaderSize
			return h
		}(),
	} {
		b, err := MarshalStateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != StateHeaderSize {
			t.Fatalf("header is %d bytes", len(b))
		}
		got, err := ParseStateHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
	}
	if got := (StateHeader{PCRMask: 1<<7 | 1<<11}).PCRs(); !reflect.DeepEqual(got, []int{7, 11}) {
		t.Errorf("PCRs() = %v", got)
	}
}

func TestStateHeaderMarshalRefuses(t *testing.T) {
	for name, mod := range map[string]func(*StateHeader){
		"cipher":                  func(h *StateHeader) { h.Cipher = 2 },
		"flags":                   func(h *StateHeader) { h.Flags = 2 },
		"offset in hdr":           func(h *StateHeader) { h.DataOffset = 512 },
		"offset unalign":          func(h *StateHeader) { h.DataOffset = StateDataOffset + 512 },
		"size zero":               func(h *StateHeader) { h.DataSize = 0 },
		"size unaligned":          func(h *StateHeader) { h.DataSize = 4097 },
		"no pcrs":                 func(h *StateHeader) { h.PCRMask = 0 },
		"pcr 24":                  func(h *StateHeader) { h.PCRMask = 1 << 24 },
		"no sealed key":           func(h *StateHeader) { h.SealedKey = nil },
		"sealed too long":         func(h *StateHeader) { h.SealedKey = make([]byte, MaxSealedKey+1) },
		"legacy key, signed mask": func(h *StateHeader) { h.PCRMask = 1<<7 | 1<<11 },
		"signed key, pcr 7 mask":  func(h *StateHeader) { h.SealedKey = []byte("KDTPMS1\x00rest") },
	} {
		h := testHeader()
		mod(&h)
		if _, err := MarshalStateHeader(h); !errors.Is(err, ErrStateHeader) {
			t.Errorf("%s: err = %v, want ErrStateHeader", name, err)
		}
	}
}

// Every single-byte change to a header is refused, and none reads as "no
// header" except one in the magic: a damaged header is never mistaken for
// a blank partition.
func TestStateHeaderCorruption(t *testing.T) {
	good, err := MarshalStateHeader(testHeader())
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		_, err := ParseStateHeader(b)
		switch {
		case i < 8 && !errors.Is(err, ErrNoStateHeader):
			t.Fatalf("byte %d (magic) changed: err = %v, want ErrNoStateHeader", i, err)
		case i >= 8 && !errors.Is(err, ErrStateHeader):
			t.Fatalf("byte %d changed: err = %v, want ErrStateHeader", i, err)
		}
	}
}

// A header whose checksum is right but whose fields are not is refused
// field by field (what a checksum cannot stop: a header written that way).
func TestStateHeaderFieldsChecked(t *testing.T) {
	for name, edit := range map[string]func([]byte){
		"version 2":      func(b []byte) { b[8] = 2 },
		"unknown flag":   func(b []byte) { b[10] = 4 },
		"cipher 0":       func(b []byte) { b[12] = 0 },
		"sealed len 0":   func(b []byte) { clear(b[36:40]) },
		"sealed len max": func(b []byte) { b[36], b[37], b[38], b[39] = 0xff, 0xff, 0xff, 0xff },
		"trailing bytes": func(b []byte) { b[40+1200+5] = 1 },
		"pcr mask 0":     func(b []byte) { clear(b[32:36]) },
	} {
		b, _ := MarshalStateHeader(testHeader())
		edit(b)
		reseal(b)
		if _, err := ParseStateHeader(b); !errors.Is(err, ErrStateHeader) {
			t.Errorf("%s: err = %v, want ErrStateHeader", name, err)
		}
	}
}

func TestStateHeaderTruncated(t *testing.T) {
	good, _ := MarshalStateHeader(testHeader())
	for _, n := range []int{0, 8, 40, 1000, StateHeaderSize - 1} {
		if _, err := ParseStateHeader(good[:n]); !errors.Is(err, ErrStateHeader) {
			t.Errorf("%d bytes: err = %v, want ErrStateHeader", n, err)
		}
	}
	if _, err := ParseStateHeader(make([]byte, StateHeaderSize)); !errors.Is(err, ErrNoStateHeader) {
		t.Errorf("zeros: err = %v, want ErrNoStateHeader", err)
	}
}

// reseal recomputes a header's checksum after an edit.
func reseal(b []byte) {
	sum := sha256Sum(b[:stateChecksumOff])
	copy(b[stateChecksumOff:], sum)
}

func FuzzParseStateHeader(f *testing.F) {
	good, _ := MarshalStateHeader(testHeader())
	f.Add(good)
	f.Add(make([]byte, StateHeaderSize))
	f.Add(good[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseStateHeader(b)
		if err != nil {
			if !errors.Is(err, ErrStateHeader) && !errors.Is(err, ErrNoStateHeader) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// What parses re-encodes to the same bytes: no field is ignored.
		again, err := MarshalStateHeader(h)
		if err != nil {
			t.Fatalf("a parsed header does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b[:StateHeaderSize]) {
			t.Fatal("a parsed header re-encodes differently")
		}
	})
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
