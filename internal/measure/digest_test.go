package measure

import (
	"bytes"
	"errors"
	"testing"
)

func TestExtendReplay(t *testing.T) {
	zero := make([]byte, DigestSize)
	d := sum([]byte("x"))
	if got, want := Extend(zero, d), sum(append(bytes.Clone(zero), d...)); !bytes.Equal(got, want) {
		t.Errorf("Extend = %x, want %x", got, want)
	}
	v, err := Replay([]Event{{PCR: 4, Digest: d}, {PCR: 4, Digest: d}})
	if err != nil || !bytes.Equal(v, Extend(Extend(zero, d), d)) {
		t.Errorf("Replay = %x, %v", v, err)
	}
	if v, err := Replay(nil); err != nil || !bytes.Equal(v, zero) {
		t.Errorf("Replay(nil) = %x, %v", v, err)
	}
	if _, err := Replay([]Event{{PCR: 4, Digest: d}, {PCR: 7, Digest: d}}); !errors.Is(err, ErrInput) {
		t.Errorf("mixed PCRs: %v", err)
	}
	if _, err := Replay([]Event{{PCR: 4, Digest: d[:20]}}); !errors.Is(err, ErrInput) {
		t.Errorf("sha1-size digest: %v", err)
	}
	if got := PCR11AtPhase(zero); !bytes.Equal(got, zero) {
		t.Errorf("no words changed the value")
	}
	if got, want := PCR11AtPhase(zero, "ready"), Extend(zero, sum([]byte("ready"))); !bytes.Equal(got, want) {
		t.Errorf("phase word hashed with a NUL or not at all: %x", got)
	}
}

func TestDigestText(t *testing.T) {
	var d Digest
	if err := d.UnmarshalText([]byte("1d3f4bde2b4b853c7bb4e7d409e1d6d7813fcdaf5ae771bbda9c8be6dcd6faa0")); err != nil {
		t.Fatal(err)
	}
	if b, _ := d.MarshalText(); string(b) != "1d3f4bde2b4b853c7bb4e7d409e1d6d7813fcdaf5ae771bbda9c8be6dcd6faa0" {
		t.Errorf("MarshalText = %s", b)
	}
	for _, bad := range []string{"zz", "1d3f", ""} {
		if err := d.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted", bad)
		}
	}
}
