// Package efi holds the one EFI_GUID type every package that reads or writes
// firmware structures shares: Secure Boot signature lists and authenticated
// variables (sign), PCR 7 events (measure, attest), OVMF variable stores
// (target/qemu) and GPT entries (earlyboot). It imports nothing of ours, so
// kubedos-init can link it.
package efi

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// GUID is an EFI_GUID in its wire (in-memory) layout: Data1, Data2 and Data3
// little-endian, Data4 as written. g[:] is what EFI structures and GPT
// entries hold; String is the canonical text. There is no other byte order
// to mix it up with.
type GUID [16]byte

// ErrMalformed marks text that is no GUID.
var ErrMalformed = errors.New("malformed GUID")

// GUIDs the UEFI specification fixes.
var (
	// GlobalVariable is the vendor GUID of SecureBoot, PK and KEK.
	GlobalVariable = MustParse("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// ImageSecurityDatabase is the vendor GUID of db and dbx.
	ImageSecurityDatabase = MustParse("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// CertX509 is the EFI_SIGNATURE_LIST type of DER X.509 certificates.
	CertX509 = MustParse("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// CertTypePKCS7 marks a WIN_CERTIFICATE_UEFI_GUID holding SignedData.
	CertTypePKCS7 = MustParse("4aafd29d-68df-49ee-8aa9-347d375665a7")
)

// Parse reads the canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, any case.
func Parse(s string) (GUID, error) {
	var g GUID
	parts := strings.Split(s, "-")
	if len(s) != 36 || len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 ||
		len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("%w %q: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", ErrMalformed, s)
	}
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("%w %q: %v", ErrMalformed, s, err)
	}
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(b[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(b[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(b[6:8]))
	copy(g[8:], b[8:])
	return g, nil
}

// MustParse is Parse for constants; it panics on a typo.
func MustParse(s string) GUID {
	g, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return g
}

// New returns a random version-4 GUID (RFC 4122 variant).
func New() (GUID, error) {
	var g GUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("random GUID: %w", err)
	}
	// The version is the top nibble of Data3, whose high byte is g[7] on
	// the wire; the variant is the top bits of Data4[0].
	g[7] = g[7]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}

// String is the canonical lower-case text.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:])
}
