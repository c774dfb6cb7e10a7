package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/kubedos/kubedos/internal/efi"
)

// eslHeaderSize is sizeof(EFI_SIGNATURE_LIST): SignatureType GUID,
// SignatureListSize, SignatureHeaderSize, SignatureSize (u32 LE each).
const eslHeaderSize = 16 + 4 + 4 + 4

// SignatureList is one parsed EFI_SIGNATURE_LIST.
type SignatureList struct {
	Type efi.GUID
	// Entries are the EFI_SIGNATURE_DATA entries, SignatureSize bytes each:
	// the owner efi.GUID followed by the signature data (a DER certificate for
	// CertX509 lists).
	Entries [][]byte
}

// ParseSignatureLists parses the contents of a Secure Boot signature database
// variable (PK, KEK, db, dbx): zero or more EFI_SIGNATURE_LISTs back to back.
// It is a reader only; internal/sign writes the lists.
func ParseSignatureLists(b []byte) ([]SignatureList, error) {
	var lists []SignatureList
	for off := 0; off < len(b); {
		if len(b)-off < eslHeaderSize {
			return nil, fmt.Errorf("%w: signature list at offset %d: %d bytes left, header needs %d", ErrInput, off, len(b)-off, eslHeaderSize)
		}
		var l SignatureList
		copy(l.Type[:], b[off:off+16])
		listSize := uint64(binary.LittleEndian.Uint32(b[off+16:]))
		headerSize := uint64(binary.LittleEndian.Uint32(b[off+20:]))
		sigSize := uint64(binary.LittleEndian.Uint32(b[off+24:]))
		switch {
		case listSize < eslHeaderSize || listSize > uint64(len(b)-off):
			return nil, fmt.Errorf("%w: signature list at offset %d: SignatureListSize %d out of range (%d bytes left)", ErrInput, off, listSize, len(b)-off)
		case sigSize <= 16:
			return nil, fmt.Errorf("%w: signature list at offset %d: SignatureSize %d too small for an owner efi.GUID and data", ErrInput, off, sigSize)
		case eslHeaderSize+headerSize > listSize || (listSize-eslHeaderSize-headerSize)%sigSize != 0:
			return nil, fmt.Errorf("%w: signature list at offset %d: SignatureListSize %d does not hold header %d plus whole %d-byte entries", ErrInput, off, listSize, headerSize, sigSize)
		}
		for p := uint64(off) + eslHeaderSize + headerSize; p < uint64(off)+listSize; p += sigSize {
			l.Entries = append(l.Entries, b[p:p+sigSize])
		}
		lists = append(lists, l)
		off += int(listSize)
	}
	return lists, nil
}

// SignatureData returns an EFI_SIGNATURE_DATA: owner ‖ data.
func SignatureData(owner efi.GUID, data []byte) []byte {
	return append(owner[:], data...)
}

// FindSignatureData returns the EFI_SIGNATURE_DATA entry of db (the db
// variable's contents) that holds the DER certificate cert. That entry is what
// the firmware measures into PCR 7 as the authority of an image verified by
// cert.
func FindSignatureData(db, cert []byte) ([]byte, error) {
	lists, err := ParseSignatureLists(db)
	if err != nil {
		return nil, fmt.Errorf("db: %w", err)
	}
	for _, l := range lists {
		if l.Type != efi.CertX509 {
			continue
		}
		for _, e := range l.Entries {
			if bytes.Equal(e[16:], cert) {
				return append([]byte(nil), e...), nil
			}
		}
	}
	return nil, fmt.Errorf("%w: db holds no X.509 entry equal to the given certificate (%d bytes)", ErrInput, len(cert))
}
