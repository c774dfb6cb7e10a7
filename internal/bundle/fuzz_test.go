package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"
)

// FuzzRead: any bytes offered as a bundle are refused or accepted, never a
// panic, and nothing is accepted without the signature.
func FuzzRead(f *testing.F) {
	ks, _ := keys(f)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: IndexName, Typeflag: tar.TypeReg, Size: 2})
	_, _ = tw.Write([]byte("{}"))
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if x, err := read(context.Background(), bytes.NewReader(b), ks.SigningPub, nil); err == nil {
			t.Fatalf("accepted unsigned input as bundle %s", x.BuildID)
		}
	})
}

// FuzzParseIndex: the index decoder refuses or accepts; an accepted index
// has only paths an extract may write.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"kubedos.io/v1alpha1","kind":"RecoveryBundle","buildID":"b","files":[{"path":"inputs/a","sha256":"` +
		"0000000000000000000000000000000000000000000000000000000000000000" + `","size":1}]}`))
	f.Add([]byte(`{"files":[{"path":"../x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := parseIndex(b)
		if err != nil {
			return
		}
		for _, fe := range x.Files {
			if checkMemberPath(fe.Path) != nil {
				t.Fatalf("accepted path %q", fe.Path)
			}
		}
	})
}
