package sign

import (
	"encoding/binary"
	"fmt"

	"github.com/kubedos/kubedos/internal/efi"
)

// eslHeaderSize is EFI_SIGNATURE_LIST without its (empty) signature header:
// SignatureType GUID, SignatureListSize, SignatureHeaderSize, SignatureSize.
const eslHeaderSize = 16 + 4 + 4 + 4

// X509SignatureList encodes one DER certificate as an EFI_SIGNATURE_LIST of
// type EFI_CERT_X509_GUID with a single EFI_SIGNATURE_DATA owned by owner:
// the form PK, KEK and db hold, and what cert-to-efi-sig-list writes.
func X509SignatureList(owner efi.GUID, certDER []byte) []byte {
	sigSize := 16 + len(certDER)
	b := make([]byte, 0, eslHeaderSize+sigSize)
	b = append(b, efi.CertX509[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(eslHeaderSize+sigSize))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(sigSize))
	b = append(b, owner[:]...)
	return append(b, certDER...)
}

// SignatureEntry is one EFI_SIGNATURE_DATA of a parsed signature list.
type SignatureEntry struct {
	Type  efi.GUID // the list's SignatureType
	Owner efi.GUID
	Data  []byte // a DER certificate when Type is efi.CertX509
}

// ParseSignatureLists reads a concatenation of EFI_SIGNATURE_LISTs, as a
// variable such as db holds, and returns every entry in order.
func ParseSignatureLists(b []byte) ([]SignatureEntry, error) {
	var out []SignatureEntry
	for off := 0; off < len(b); {
		if len(b)-off < eslHeaderSize {
			return nil, fmt.Errorf("signature list at %d: %d bytes left, header needs %d", off, len(b)-off, eslHeaderSize)
		}
		typ := efi.GUID(b[off : off+16])
		listSize := int(binary.LittleEndian.Uint32(b[off+16:]))
		hdrSize := int(binary.LittleEndian.Uint32(b[off+20:]))
		sigSize := int(binary.LittleEndian.Uint32(b[off+24:]))
		if listSize < eslHeaderSize || listSize > len(b)-off {
			return nil, fmt.Errorf("signature list at %d: SignatureListSize %d out of range", off, listSize)
		}
		body := listSize - eslHeaderSize
		if hdrSize < 0 || hdrSize > body || sigSize < 16 || (body-hdrSize)%sigSize != 0 {
			return nil, fmt.Errorf("signature list at %d: header size %d and signature size %d do not fit list size %d",
				off, hdrSize, sigSize, listSize)
		}
		for p := off + eslHeaderSize + hdrSize; p < off+listSize; p += sigSize {
			owner := efi.GUID(b[p : p+16])
			out = append(out, SignatureEntry{Type: typ, Owner: owner, Data: b[p+16 : p+sigSize]})
		}
		off += listSize
	}
	return out, nil
}
