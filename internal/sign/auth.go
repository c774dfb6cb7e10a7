package sign

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/kubedos/kubedos/internal/efi"
)

// Attributes of a Secure Boot key variable: non-volatile, boot- and
// runtime-visible, written only with a time-based authenticated payload.
const (
	EFIVariableNonVolatile       = 0x01
	EFIVariableBootserviceAccess = 0x02
	EFIVariableRuntimeAccess     = 0x04
	EFIVariableTimeBasedAuth     = 0x20
	SecureBootVarAttrs           = EFIVariableNonVolatile | EFIVariableBootserviceAccess |
		EFIVariableRuntimeAccess | EFIVariableTimeBasedAuth
)

// WIN_CERTIFICATE constants shared by .auth payloads and PE images.
const (
	winCertRevision    = 0x0200
	winCertTypePKCS    = 0x0002 // WIN_CERT_TYPE_PKCS_SIGNED_DATA (Authenticode)
	winCertTypeEFIGUID = 0x0EF1 // WIN_CERT_TYPE_EFI_GUID (authenticated variables)
)

// efiTime encodes EFI_TIME as time-based authenticated variables require:
// UTC, whole seconds, Pad1, Nanosecond, TimeZone, Daylight and Pad2 zero.
func efiTime(t time.Time) []byte {
	t = t.UTC()
	b := binary.LittleEndian.AppendUint16(nil, uint16(t.Year()))
	b = append(b, byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0)
	return append(b, make([]byte, 8)...) // Nanosecond u32, TimeZone i16, Daylight, Pad2
}

// SignedVariable builds the payload firmware accepts for SetVariable on a
// time-based authenticated variable (what efitools calls a .auth file):
// EFI_VARIABLE_AUTHENTICATION_2 { EFI_TIME, WIN_CERTIFICATE_UEFI_GUID with a
// PKCS#7 SignedData } followed by data. The signature covers
// name‖vendor‖attrs‖timestamp‖data (name as UTF-16LE, no terminator) and is
// made by cert/key, which must be authorised to write the variable: PK for
// PK and KEK, KEK for db. The output equals sign-efi-sig-list's for the
// same inputs and timestamp.
func SignedVariable(name string, vendor efi.GUID, attrs uint32, ts time.Time, data []byte,
	cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	stamp := efiTime(ts)
	var msg bytes.Buffer
	for _, u := range utf16.Encode([]rune(name)) {
		msg.Write(binary.LittleEndian.AppendUint16(nil, u))
	}
	msg.Write(vendor[:])
	msg.Write(binary.LittleEndian.AppendUint32(nil, attrs))
	msg.Write(stamp)
	msg.Write(data)
	digest := sha256.Sum256(msg.Bytes())

	// Detached: the firmware rebuilds the signed bytes itself. No signed
	// attributes, as efitools and edk2 expect.
	p7, err := encodeSignedData(contentInfo{ContentType: oidData}, cert, key, nil, digest[:])
	if err != nil {
		return nil, fmt.Errorf("sign variable %s: %w", name, err)
	}
	out := bytes.NewBuffer(stamp)
	out.Write(binary.LittleEndian.AppendUint32(nil, uint32(4+2+2+16+len(p7))))
	out.Write(binary.LittleEndian.AppendUint16(nil, winCertRevision))
	out.Write(binary.LittleEndian.AppendUint16(nil, winCertTypeEFIGUID))
	out.Write(efi.CertTypePKCS7[:])
	out.Write(p7)
	out.Write(data)
	return out.Bytes(), nil
}
