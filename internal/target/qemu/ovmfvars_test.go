package qemu

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

func TestEnrollSecureBoot(t *testing.T) {
	blank, err := os.ReadFile(OVMFVarsBlank)
	if err != nil {
		t.Skip("ovmf not installed")
	}
	pk, kek, db := []byte("PK-list"), []byte("KEK-list"), []byte("db-list")
	ts := time.Unix(1700000000, 0)
	a, err := EnrollSecureBoot(blank, pk, kek, db, ts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EnrollSecureBoot(blank, pk, kek, db, ts)
	if !bytes.Equal(a, b) || len(a) != len(blank) {
		t.Fatal("enrollment is not deterministic or changed the image size")
	}
	vars, err := ListVariables(a)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"PK": pk, "KEK": kek, "db": db, "SecureBootEnable": {1}, "CustomMode": {0}}
	for _, v := range vars {
		if w, ok := want[v.Name]; ok {
			if !bytes.Equal(v.Data, w) {
				t.Errorf("%s = %x, want %x", v.Name, v.Data, w)
			}
			delete(want, v.Name)
		}
	}
	if len(want) != 0 {
		t.Errorf("variables not enrolled: %v", want)
	}
	if _, err := EnrollSecureBoot(a, pk, kek, db, ts); err == nil {
		t.Error("enrolling twice into the same store was accepted")
	}
	if _, err := EnrollSecureBoot(blank, nil, kek, db, ts); err == nil {
		t.Error("an empty PK was accepted")
	}
	if _, err := EnrollSecureBoot(make([]byte, 4096), pk, kek, db, ts); !errors.Is(err, ErrNotOVMFVars) {
		t.Errorf("garbage accepted as a VARS image: %v", err)
	}
}

func FuzzListVariables(f *testing.F) {
	if blank, err := os.ReadFile(OVMFVarsBlank); err == nil {
		f.Add(blank[:8192])
	}
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, img []byte) { _, _ = ListVariables(img) })
}
