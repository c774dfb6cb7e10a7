package sign

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/kubedos/kubedos/internal/efi"
)

// TestSignatureListMatchesEfitools holds each .esl byte-for-byte against
// cert-to-efi-sig-list run on the same certificate and owner GUID.
func TestSignatureListMatchesEfitools(t *testing.T) {
	needTool(t, "cert-to-efi-sig-list")
	ks := sharedKeys(t)
	for _, tc := range []struct{ cert, esl string }{
		{FilePKCert, FilePKESL}, {FileKEKCert, FileKEKESL}, {FileDBCert, FileDBESL},
	} {
		t.Run(tc.esl, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "want.esl")
			run(t, "cert-to-efi-sig-list", "-g", ks.Owner.String(), ks.Path(tc.cert), out)
			got, want := readFile(t, ks.Path(tc.esl)), readFile(t, out)
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from cert-to-efi-sig-list:\n got %x\nwant %x", tc.esl, got[:64], want[:64])
			}
		})
	}
}

func TestParseSignatureLists(t *testing.T) {
	ks := sharedKeys(t)
	db := readFile(t, ks.Path(FileDBESL))
	pk := readFile(t, ks.Path(FilePKESL))
	both := append(append([]byte{}, db...), pk...)
	entries, err := ParseSignatureLists(both)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2", len(entries))
	}
	for i, want := range [][]byte{ks.DB.Raw, ks.PK.Raw} {
		if entries[i].Type != efi.CertX509 || entries[i].Owner != ks.Owner || !bytes.Equal(entries[i].Data, want) {
			t.Errorf("entry %d: type %v owner %v, data matches: %v", i, entries[i].Type, entries[i].Owner, bytes.Equal(entries[i].Data, want))
		}
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"short header", db[:20]},
		{"list size past end", db[:len(db)-1]},
		{"zero signature size", func() []byte { b := bytes.Clone(db); copy(b[24:28], []byte{0, 0, 0, 0}); return b }()},
		{"list size below header", func() []byte { b := bytes.Clone(db); copy(b[16:20], []byte{4, 0, 0, 0}); return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSignatureLists(tc.in); err == nil {
				t.Error("want error")
			}
		})
	}
}
