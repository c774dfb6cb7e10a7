package lock

import (
	"strings"
	"testing"
	"time"
)

func TestReadStanzas(t *testing.T) {
	in := "Package: a\nDescription: short\n long line\n .\n more\nX-Skip: yes\n continued skip\n\n\nPackage: b\nConffiles:\n /etc/b 123\n"
	var got []stanza
	if err := readStanzas(strings.NewReader(in), map[string]bool{"Package": true, "Description": true, "Conffiles": true},
		func(s stanza) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d stanzas, want 2: %v", len(got), got)
	}
	if d := got[0].get("description"); d != "short\n long line\n .\n more" {
		t.Errorf("Description = %q", d)
	}
	if got[0].get("X-Skip") != "" {
		t.Errorf("a field not kept was stored")
	}
	if s := got[1].String(); s != "Package: b\nConffiles:\n /etc/b 123\n" {
		t.Errorf("String() = %q", s)
	}
	for _, bad := range []string{" orphan continuation\n", "no colon here\n"} {
		if err := readStanzas(strings.NewReader(bad), nil, func(stanza) error { return nil }); err == nil {
			t.Errorf("readStanzas(%q) accepted bad input", bad)
		}
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		err  string
	}{
		{"Suite: oldstable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n", time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC), ""},
		{"Suite: x\nDate: Sat, 11 Jul 2026 10:16:37 +0000\n", time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC), ""},
		{"Suite: x\nDate: yesterday\n", time.Time{}, `Date "yesterday"`},
		{"Suite: x\n", time.Time{}, `Date ""`},
	}
	for _, tt := range tests {
		r, err := parseRelease([]byte(tt.in), "Release")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseRelease(%q) = %v, want error %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !r.Date.Equal(tt.want) {
			t.Errorf("parseRelease(%q) = %v, %v; want %v", tt.in, r.Date, err, tt.want)
		}
	}
}

func TestParsePrintURIsAndLookup(t *testing.T) {
	sum := strings.Repeat("a", 64)
	idx := &index{byFilename: map[string]Package{
		"pool/main/libc/libcap2/libcap2_2.66-4+b1_amd64.deb": {Name: "libcap2", Version: "1:2.66-4+b1", SHA256: sum, Size: 10},
	}}
	out := "'http://deb.debian.org/debian/pool/main/libc/libcap2/libcap2_2.66-4%2bb1_amd64.deb' libcap2_1%3a2.66-4+b1_amd64.deb 10 SHA256:" + sum + "\n"
	uris, err := parsePrintURIs([]byte(out))
	if err != nil || len(uris) != 1 {
		t.Fatalf("parsePrintURIs = %v, %v", uris, err)
	}
	p, err := idx.lookup("http://deb.debian.org/debian", uris[0])
	if err != nil || p.Version != "1:2.66-4+b1" {
		t.Errorf("lookup = %+v, %v", p, err)
	}
	if _, err := idx.lookup("http://other.example/debian", uris[0]); err == nil {
		t.Errorf("lookup accepted a URI outside the mirror")
	}
	uris[0].Size = 11
	if _, err := idx.lookup("http://deb.debian.org/debian", uris[0]); err == nil || !strings.Contains(err.Error(), "libcap2") {
		t.Errorf("lookup with a size apt disagrees on = %v", err)
	}
	for _, bad := range []string{"", "'x' y 1 MD5Sum:abc\n", "garbage\n", "'x' y notanumber SHA256:" + sum + "\n"} {
		if _, err := parsePrintURIs([]byte(bad)); err == nil {
			t.Errorf("parsePrintURIs(%q) accepted bad output", bad)
		}
	}
}
