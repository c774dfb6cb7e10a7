package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kubedos/kubedos/internal/efi"
)

// eslOf builds one EFI_SIGNATURE_LIST with no header and equal-size entries.
func eslOf(typ efi.GUID, entries ...[]byte) []byte {
	b := append([]byte(nil), typ[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(eslHeaderSize+len(entries)*len(entries[0])))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries[0])))
	for _, e := range entries {
		b = append(b, e...)
	}
	return b
}

func TestParseSignatureLists(t *testing.T) {
	p := loadProto(t)
	db := p.file(t, "db.esl")
	lists, err := ParseSignatureLists(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(lists) != 1 || lists[0].Type != efi.CertX509 || len(lists[0].Entries) != 1 ||
		!bytes.Equal(lists[0].Entries[0][16:], p.file(t, "db.cer")) {
		t.Fatalf("lists %+v", lists)
	}
	two := append(bytes.Clone(db), eslOf(efi.CertX509, make([]byte, 20), make([]byte, 20))...)
	if lists, err := ParseSignatureLists(two); err != nil || len(lists) != 2 || len(lists[1].Entries) != 2 {
		t.Errorf("two lists: %v %+v", err, lists)
	}
	if lists, err := ParseSignatureLists(nil); err != nil || len(lists) != 0 {
		t.Errorf("empty: %v %v", err, lists)
	}

	bad := map[string][]byte{
		"short header": db[:20],
		"list too long": func() []byte {
			b := bytes.Clone(db)
			binary.LittleEndian.PutUint32(b[16:], uint32(len(b)+1))
			return b
		}(),
		"tiny signature size": func() []byte {
			b := bytes.Clone(db)
			binary.LittleEndian.PutUint32(b[24:], 16)
			return b
		}(),
		"partial entry": func() []byte {
			b := bytes.Clone(db)
			binary.LittleEndian.PutUint32(b[24:], 100)
			return b
		}(),
		"huge header": func() []byte {
			b := bytes.Clone(db)
			binary.LittleEndian.PutUint32(b[20:], 0xffffffff)
			return b
		}(),
	}
	for name, b := range bad {
		if _, err := ParseSignatureLists(b); !errors.Is(err, ErrInput) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestFindSignatureData(t *testing.T) {
	p := loadProto(t)
	db, cert := p.file(t, "db.esl"), p.file(t, "db.cer")
	got, err := FindSignatureData(db, cert)
	if err != nil {
		t.Fatal(err)
	}
	if want := SignatureData(efi.MustParse("6b756265-646f-7300-0000-00000000cafe"), cert); !bytes.Equal(got, want) {
		t.Errorf("entry %x, want owner ‖ cert", got[:32])
	}
	if _, err := FindSignatureData(db, p.file(t, "PK.esl")); !errors.Is(err, ErrInput) {
		t.Errorf("unknown cert: %v", err)
	}
	if _, err := FindSignatureData(db[:30], cert); !errors.Is(err, ErrInput) {
		t.Errorf("bad db: %v", err)
	}
}
