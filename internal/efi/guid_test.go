package efi

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		wire []byte
	}{
		// EFI_GLOBAL_VARIABLE as it appears in firmware variable stores.
		{"8be4df61-93ca-11d2-aa0d-00e098032b8c", []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}},
		{"6b756265-646f-7300-0000-00000000cafe", []byte{0x65, 0x62, 0x75, 0x6b, 0x6f, 0x64, 0x00, 0x73, 0, 0, 0, 0, 0, 0, 0xca, 0xfe}},
	}
	for _, tc := range tests {
		g, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g[:], tc.wire) {
			t.Errorf("Parse(%s) wire = %x, want %x", tc.in, g[:], tc.wire)
		}
		if got := g.String(); got != tc.in {
			t.Errorf("String = %s, want %s", got, tc.in)
		}
		if up, err := Parse(strings.ToUpper(tc.in)); err != nil || up != g {
			t.Errorf("Parse(upper case) = %v, %v; want %v", up, err, g)
		}
	}
	for _, bad := range []string{"", "8be4df61-93ca-11d2-aa0d-00e098032b8", "8be4df6193ca11d2aa0d00e098032b8c",
		"zbe4df61-93ca-11d2-aa0d-00e098032b8c", "8be4df61x93ca-11d2-aa0d-00e098032b8c", "8be4df61-93ca-11d2-aa0d00-e098032b8c"} {
		if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestNew(t *testing.T) {
	g, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s := g.String()
	if s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
		t.Errorf("New() = %s: not version 4 / RFC 4122 variant", s)
	}
	if back, err := Parse(s); err != nil || back != g {
		t.Errorf("Parse(String()) = %v, %v; want %v", back, err, g)
	}
}
