package sign

import (
	"crypto"
	"fmt"
)

// AuthenticodeDigest returns the Authenticode hash of a PE image: what
// Authenticode signatures cover and what UEFI firmware measures into PCR 4
// for each image it loads (edk2 DxeTpm2MeasureBootLib and
// DxeImageVerificationLib agree). Following the PE/COFF Authenticode
// specification: hash the headers up to SizeOfHeaders except the checksum
// field and the certificate-table directory entry; then each section's raw
// data in file-offset order; then any data after the sections up to the
// attribute certificate table, which is excluded.
func AuthenticodeDigest(pe []byte, h crypto.Hash) ([]byte, error) {
	if !h.Available() {
		return nil, fmt.Errorf("authenticode digest: hash %v is not available", h)
	}
	l, err := parsePE(pe)
	if err != nil {
		return nil, err
	}
	return l.digest(pe, h)
}

func (l *peLayout) digest(pe []byte, h crypto.Hash) ([]byte, error) {
	w := h.New()
	w.Write(pe[:l.checksumOff])
	if l.certDirOff < 0 {
		// No certificate-table entry to skip (NumberOfRvaAndSizes <= 4).
		w.Write(pe[l.checksumOff+4 : l.sizeOfHeaders])
	} else {
		w.Write(pe[l.checksumOff+4 : l.certDirOff])
		w.Write(pe[l.certDirOff+8 : l.sizeOfHeaders])
	}
	hashed := l.sizeOfHeaders
	for _, s := range l.sections {
		w.Write(pe[s.off : s.off+s.size])
		hashed += s.size
	}
	// The spec counts bytes, not offsets: trailing data starts at
	// SUM_OF_BYTES_HASHED, which is the end of the last section only when
	// sections are contiguous. Firmware does exactly this, so we do too.
	end := len(pe) - l.cert.size
	switch {
	case hashed < end:
		w.Write(pe[hashed:end])
	case hashed > end && l.cert.size > 0:
		return nil, malformed("headers and sections (%d bytes) overlap the certificate table at %#x", hashed, l.cert.off)
	}
	return w.Sum(nil), nil
}
