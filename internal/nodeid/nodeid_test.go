package nodeid

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/errdefs"
)

func TestStrings(t *testing.T) {
	tests := []struct {
		name string
		id   Identity
		want []string
	}{
		{"empty", Identity{}, nil},
		{"qemu node", Identity{Name: "w-1", Hub: "10.20.0.10:7443", Address: netip.MustParsePrefix("10.20.0.21/24")},
			[]string{"kubedos.name=w-1", "kubedos.hub=10.20.0.10:7443", "kubedos.address=10.20.0.21/24"}},
		{"with gateway", Identity{Name: "m", Hub: "h.example:7443", Address: netip.MustParsePrefix("10.0.0.5/16"), Gateway: netip.MustParseAddr("10.0.0.1")},
			[]string{"kubedos.name=m", "kubedos.hub=h.example:7443", "kubedos.address=10.0.0.5/16", "kubedos.gateway=10.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.id.Strings()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		{},
		{Name: "master"},
		{Name: "w-2", Hub: "10.20.0.10:7443", Address: netip.MustParsePrefix("10.20.0.22/24")},
		{Name: "lb-1", Hub: "[fd00::1]:7443", Address: netip.MustParsePrefix("192.168.1.9/24"), Gateway: netip.MustParseAddr("192.168.1.1")},
	} {
		strs, err := id.Strings()
		if err != nil {
			t.Fatalf("%+v: %v", id, err)
		}
		// Both transports: one OEM string per pair, and the SKU's one string.
		for _, form := range [][]string{strs, {strings.Join(strs, ";")}} {
			pairs := map[string]string{}
			Pairs(pairs, append([]string{"unrelated", "other.key=x"}, form...)...)
			got, err := Decode(pairs)
			if err != nil {
				t.Fatalf("%q: %v", form, err)
			}
			if got != id {
				t.Errorf("%q: got %+v, want %+v", form, got, id)
			}
		}
	}
}

func TestPairsFirstWins(t *testing.T) {
	pairs := map[string]string{}
	Pairs(pairs, "kubedos.name=a", "kubedos.name=b;kubedos.hub=h:1")
	if want := map[string]string{"kubedos.name": "a", "kubedos.hub": "h:1"}; !reflect.DeepEqual(pairs, want) {
		t.Errorf("got %v, want %v", pairs, want)
	}
}

func TestDecodeBadInput(t *testing.T) {
	tests := []struct {
		name  string
		pairs map[string]string
		want  []string // each must appear in the error
	}{
		{"address not a prefix", map[string]string{KeyAddress: "10.20.0.10"}, []string{"kubedos.address", `"10.20.0.10"`}},
		{"address ipv6", map[string]string{KeyAddress: "fd00::1/64"}, []string{"kubedos.address"}},
		{"address /32", map[string]string{KeyAddress: "10.0.0.1/32"}, []string{"kubedos.address"}},
		{"gateway outside", map[string]string{KeyAddress: "10.0.0.5/24", KeyGateway: "10.0.1.1"}, []string{"kubedos.gateway", "not an address inside 10.0.0.0/24"}},
		{"gateway garbage", map[string]string{KeyAddress: "10.0.0.5/24", KeyGateway: "gw"}, []string{"kubedos.gateway", `"gw"`}},
		{"gateway alone", map[string]string{KeyGateway: "10.0.0.1"}, []string{"kubedos.gateway", "needs kubedos.address"}},
		{"hub without port", map[string]string{KeyName: "a", KeyHub: "10.0.0.1"}, []string{"kubedos.hub", "host:port"}},
		{"hub bad port", map[string]string{KeyName: "a", KeyHub: "10.0.0.1:99999"}, []string{"kubedos.hub", "port"}},
		{"hub without name", map[string]string{KeyHub: "10.0.0.1:7443"}, []string{"no kubedos.name"}},
		{"bad name", map[string]string{KeyName: "Master_1"}, []string{"kubedos.name", "DNS label"}},
		{"too long", map[string]string{KeyName: strings.Repeat("a", 300)}, []string{"kubedos.name", "longer than"}},
		{"two problems", map[string]string{KeyName: "A", KeyAddress: "x"}, []string{"kubedos.name", "kubedos.address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.pairs)
			if err == nil {
				t.Fatal("decoded, want an error")
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error %v is not classed ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestStringsRefusesInvalid(t *testing.T) {
	if _, err := (Identity{Hub: "nohost"}).Strings(); err == nil || !strings.Contains(err.Error(), "kubedos.hub") {
		t.Errorf("got %v, want an error naming kubedos.hub", err)
	}
}

func TestFileRoundTrip(t *testing.T) {
	id := Identity{Name: "bm-1", Hub: "10.20.0.10:7443", Address: netip.MustParsePrefix("10.20.0.31/24"), Gateway: netip.MustParseAddr("10.20.0.1")}
	b, err := id.File()
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string]string{}
	ParseFile(pairs, b)
	got, err := Decode(pairs)
	if err != nil || got != id {
		t.Fatalf("got %+v, %v; want %+v", got, err, id)
	}
	// A key read before (SMBIOS) wins over the file's.
	pairs = map[string]string{KeyHub: "10.9.9.9:7443"}
	ParseFile(pairs, b)
	if pairs[KeyHub] != "10.9.9.9:7443" || pairs[KeyName] != "bm-1" {
		t.Errorf("merge: %v", pairs)
	}
	if _, err := (Identity{Hub: "h:1"}).File(); err == nil {
		t.Error("an invalid identity was encoded")
	}
}

func TestFieldError(t *testing.T) {
	_, err := Decode(map[string]string{KeyAddress: "10.0.0.5"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != KeyAddress || !strings.Contains(fe.Want, "prefix length") {
		t.Fatalf("got %v, want a FieldError for %s", err, KeyAddress)
	}
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("%v is not classed ErrInvalid", err)
	}
}
