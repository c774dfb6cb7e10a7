package sign

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is an EFI GUID held in its textual (RFC 4122, big-endian) byte
// order. EFI structures store the first three fields little-endian; Bytes
// gives that wire form, so the two orders can never be mixed up silently.
type GUID [16]byte

// GUIDs the UEFI specification fixes.
var (
	// EFIGlobalVariable is the vendor GUID of PK and KEK.
	EFIGlobalVariable = MustParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// EFIImageSecurityDatabase is the vendor GUID of db and dbx.
	EFIImageSecurityDatabase = MustParseGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// EFICertX509 is the signature type of a list of DER certificates.
	EFICertX509 = MustParseGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// EFICertTypePKCS7 marks a WIN_CERTIFICATE_UEFI_GUID holding SignedData.
	EFICertTypePKCS7 = MustParseGUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
)

// ParseGUID reads the canonical 8-4-4-4-12 hex form, any case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	parts := strings.Split(s, "-")
	if len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 ||
		len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("GUID %q: %w", s, err)
	}
	copy(g[:], b)
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a typo.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// NewGUID returns a random version-4 GUID.
func NewGUID() (GUID, error) {
	var g GUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("random GUID: %w", err)
	}
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}

func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Bytes is the EFI_GUID wire form: Data1, Data2, Data3 little-endian, Data4
// as is.
func (g GUID) Bytes() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], binary.BigEndian.Uint32(g[0:]))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(g[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(g[6:]))
	copy(b[8:], g[8:])
	return b
}

// GUIDFromBytes reads the EFI_GUID wire form.
func GUIDFromBytes(b []byte) (GUID, error) {
	var g GUID
	if len(b) != 16 {
		return g, fmt.Errorf("EFI_GUID is 16 bytes, got %d", len(b))
	}
	binary.BigEndian.PutUint32(g[0:], binary.LittleEndian.Uint32(b[0:]))
	binary.BigEndian.PutUint16(g[4:], binary.LittleEndian.Uint16(b[4:]))
	binary.BigEndian.PutUint16(g[6:], binary.LittleEndian.Uint16(b[6:]))
	copy(g[8:], b[8:])
	return g, nil
}
