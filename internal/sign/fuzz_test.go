package sign

import (
	"crypto"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/kubedos/kubedos/internal/efi"
)

// FuzzAuthenticodeDigest: no input panics, and every failure is classified.
func FuzzAuthenticodeDigest(f *testing.F) {
	f.Add(basicPE().build())
	f.Add(testPE{pe32: true, numDirs: 4, sections: []testSection{{".text", 0x200, 0x10, 1}}, trailing: []byte{1, 2, 3}}.build())
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := AuthenticodeDigest(b, crypto.SHA256)
		if err != nil && !errors.Is(err, ErrMalformedPE) {
			t.Errorf("unclassified error: %v", err)
		}
		if err == nil && len(d) != 32 {
			t.Errorf("digest of %d bytes", len(d))
		}
	})
}

// FuzzVerifyPE: no input panics (including in the PKCS#7 parser), and a
// mutated signed image never verifies unless its digest is unchanged.
func FuzzVerifyPE(f *testing.F) {
	// A fixed test key: generating RSA keys under fuzzing's coverage
	// instrumentation takes minutes per worker.
	cert, err := ReadCertificate("testdata/fuzz-db.crt")
	if err != nil {
		f.Fatal(err)
	}
	key, err := ReadPrivateKey("testdata/fuzz-db.key")
	if err != nil {
		f.Fatal(err)
	}
	signed, err := SignPEImage(basicPE().build(), cert, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(basicPE().build())
	roots := []*x509.Certificate{cert}
	want, _ := AuthenticodeDigest(signed, crypto.SHA256)
	f.Fuzz(func(t *testing.T, b []byte) {
		err := VerifyPE(b, roots)
		if err == nil {
			got, _ := AuthenticodeDigest(b, crypto.SHA256)
			if string(got) != string(want) {
				t.Errorf("an image with digest %x verified; only %x is signed", got, want)
			}
		}
	})
}

func FuzzParseSignatureLists(f *testing.F) {
	f.Add(X509SignatureList(efi.GlobalVariable, []byte("cert")))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseSignatureLists(b)
	})
}
