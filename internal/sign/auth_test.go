package sign

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubedos/kubedos/internal/efi"
)

// TestAuthMatchesEfitools holds each .auth byte-for-byte against
// sign-efi-sig-list with the same signer, owner GUID and timestamp. RSA
// PKCS#1 v1.5 is deterministic, so equal bytes mean equal structure and an
// equal signature over the same message.
func TestAuthMatchesEfitools(t *testing.T) {
	needTool(t, "sign-efi-sig-list")
	ks := sharedKeys(t)
	stamp := ceremonyTime.Format("2006-01-02 15:04:05")
	for _, tc := range []struct {
		vari, esl, auth, key, cert string
	}{
		{"PK", FilePKESL, FilePKAuth, FilePKKey, FilePKCert},
		{"KEK", FileKEKESL, FileKEKAuth, FilePKKey, FilePKCert},
		{"db", FileDBESL, FileDBAuth, FileKEKKey, FileKEKCert},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "want.auth")
			run(t, "sign-efi-sig-list", "-g", ks.Owner.String(), "-t", stamp,
				"-k", ks.Path(tc.key), "-c", ks.Path(tc.cert), tc.vari, ks.Path(tc.esl), out)
			got, want := readFile(t, ks.Path(tc.auth)), readFile(t, out)
			if !bytes.Equal(got, want) {
				os.WriteFile(filepath.Join(t.TempDir(), "got.auth"), got, 0o644)
				t.Errorf("%s differs from sign-efi-sig-list (%d vs %d bytes)", tc.auth, len(got), len(want))
			}
		})
	}
}

// TestAuthSignatureVerifies checks the .auth PKCS#7 with openssl, an
// implementation independent of both ours and efitools' encoder: the signed
// message is rebuilt from the payload as firmware does.
func TestAuthSignatureVerifies(t *testing.T) {
	needTool(t, "openssl")
	ks := sharedKeys(t)
	for _, tc := range []struct {
		auth, signer string
		prefix       []byte // UTF-16LE name ‖ vendor GUID ‖ attributes
	}{
		{FilePKAuth, FilePKCert, varPrefix("PK", efi.GlobalVariable)},
		{FileKEKAuth, FilePKCert, varPrefix("KEK", efi.GlobalVariable)},
		{FileDBAuth, FileKEKCert, varPrefix("db", efi.ImageSecurityDatabase)},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			auth := readFile(t, ks.Path(tc.auth))
			dwLength := int(binary.LittleEndian.Uint32(auth[16:]))
			p7 := auth[16+24 : 16+dwLength]
			msg := append(append(bytes.Clone(tc.prefix), auth[:16]...), auth[16+dwLength:]...)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "p7.der"), wrapContentInfo(t, p7), 0o644)
			os.WriteFile(filepath.Join(dir, "msg"), msg, 0o644)
			args := []string{"smime", "-verify", "-binary", "-inform", "DER",
				"-in", filepath.Join(dir, "p7.der"), "-content", filepath.Join(dir, "msg"),
				"-CAfile", ks.Path(tc.signer), "-purpose", "any", "-out", os.DevNull}
			run(t, "openssl", args...)
			msg[len(msg)-1] ^= 1 // the last byte of the signature list
			os.WriteFile(filepath.Join(dir, "msg"), msg, 0o644)
			runFails(t, "openssl", args...)
		})
	}
}

func varPrefix(name string, vendor efi.GUID) []byte {
	var b []byte
	for _, r := range name {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	b = append(b, vendor[:]...)
	return binary.LittleEndian.AppendUint32(b, SecureBootVarAttrs)
}

// wrapContentInfo puts a bare SignedData (as UEFI stores it) into the
// ContentInfo openssl expects.
func wrapContentInfo(t *testing.T, sd []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(contentInfo{ContentType: oidSignedData, Content: explicit0(sd)})
	if err != nil {
		t.Fatal(err)
	}
	return der
}
