package qemu

// OVMF variable store editing, written by hand: the edk2 authenticated
// variable store is a documented fixed layout, and no Go library for it is
// reachable here (virt-firmware is Python and not in bookworm). Enrolling on
// the host is deterministic and needs no extra boot, unlike systemd-boot's
// secure-boot-enroll, which resets the machine once.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/kubedos/kubedos/internal/efi"
)

var (
	// edk2's own GUIDs: the variable store's firmware volume and format,
	// and the variables that switch Secure Boot on and custom mode off.
	guidSystemNvDataFv   = efi.MustParse("fff12b8d-7696-4c8b-a985-2747075b4f50")
	guidAuthVarStore     = efi.MustParse("aaf32c78-947b-439a-a180-2e144ec37792")
	guidSecureBootEnable = efi.MustParse("f0a30bc7-af08-4556-99c4-001009c93a44")
	guidCustomMode       = efi.MustParse("c076ec0c-7028-4399-a072-71ee5c448b9f")
)

const (
	attrNV         = 0x1
	attrBS         = 0x2
	attrRT         = 0x4
	attrTimeAuth   = 0x20
	varStartID     = 0x55AA
	varAdded       = 0x3F
	authVarHdrSize = 60 // packed AUTHENTICATED_VARIABLE_HEADER
	storeHdrSize   = 28 // VARIABLE_STORE_HEADER
	storeFormatted = 0x5A
	storeHealthy   = 0xFE
)

type store struct {
	img        []byte
	start, end int // variable area [start,end) within img
}

func open(img []byte) (*store, error) {
	if len(img) < 0x100 || string(img[0x28:0x2c]) != "_FVH" {
		return nil, errors.New("no firmware volume header (_FVH)")
	}
	var fsg efi.GUID
	copy(fsg[:], img[0x10:0x20])
	if fsg != guidSystemNvDataFv {
		return nil, fmt.Errorf("unexpected FV filesystem guid %s", fsg)
	}
	hl := int(binary.LittleEndian.Uint16(img[0x30:]))
	var sg efi.GUID
	copy(sg[:], img[hl:hl+16])
	if sg != guidAuthVarStore {
		return nil, fmt.Errorf("variable store is not the authenticated format (%s)", sg)
	}
	size := int(binary.LittleEndian.Uint32(img[hl+16:]))
	if img[hl+20] != storeFormatted || img[hl+21] != storeHealthy {
		return nil, errors.New("variable store not formatted/healthy")
	}
	return &store{img: img, start: align4(hl + storeHdrSize), end: hl + size}, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

type variable struct {
	off    int
	state  uint8
	attr   uint32
	ts     []byte
	name   string
	vendor efi.GUID
	data   []byte
}

// walk returns all variable records and the offset of the first free byte.
func (s *store) walk() ([]variable, int) {
	var vars []variable
	p := s.start
	for p+authVarHdrSize <= s.end && binary.LittleEndian.Uint16(s.img[p:]) == varStartID {
		h := s.img[p:]
		ns := int(binary.LittleEndian.Uint32(h[36:]))
		ds := int(binary.LittleEndian.Uint32(h[40:]))
		if ns < 0 || ds < 0 || ns > s.end-p || ds > s.end-p-authVarHdrSize-ns {
			break // a corrupt record: stop rather than read past the store
		}
		var v variable
		v.off = p
		v.state = h[2]
		v.attr = binary.LittleEndian.Uint32(h[4:])
		v.ts = append([]byte(nil), h[16:32]...)
		copy(v.vendor[:], h[44:60])
		nameb := h[authVarHdrSize : authVarHdrSize+ns]
		u := make([]uint16, 0, ns/2)
		for i := 0; i+1 < len(nameb); i += 2 {
			c := binary.LittleEndian.Uint16(nameb[i:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		v.name = string(utf16.Decode(u))
		v.data = h[authVarHdrSize+ns : authVarHdrSize+ns+ds]
		vars = append(vars, v)
		p = align4(p + authVarHdrSize + ns + ds)
	}
	return vars, p
}

func efiTime(t time.Time) []byte {
	b := make([]byte, 16)
	t = t.UTC()
	binary.LittleEndian.PutUint16(b[0:], uint16(t.Year()))
	b[2], b[3], b[4], b[5], b[6] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	// Nanosecond, TimeZone, Daylight stay 0 (as in the auth descriptor edk2 stores)
	return b
}

func (s *store) add(name string, vendor efi.GUID, attr uint32, ts []byte, data []byte) error {
	vars, free := s.walk()
	for _, v := range vars {
		if v.name == name && v.vendor == vendor && v.state == varAdded {
			return fmt.Errorf("variable %s-%s already present; start from a blank store", name, vendor)
		}
	}
	u := utf16.Encode([]rune(name))
	nameb := make([]byte, 2*len(u)+2)
	for i, c := range u {
		binary.LittleEndian.PutUint16(nameb[2*i:], c)
	}
	rec := make([]byte, authVarHdrSize)
	binary.LittleEndian.PutUint16(rec[0:], varStartID)
	rec[2] = varAdded
	rec[3] = 0
	binary.LittleEndian.PutUint32(rec[4:], attr)
	// MonotonicCount (8..16) = 0
	if ts != nil {
		copy(rec[16:32], ts)
	}
	// PubKeyIndex (32..36) = 0
	binary.LittleEndian.PutUint32(rec[36:], uint32(len(nameb)))
	binary.LittleEndian.PutUint32(rec[40:], uint32(len(data)))
	copy(rec[44:60], vendor[:])
	rec = append(rec, nameb...)
	rec = append(rec, data...)
	if free+len(rec) > s.end {
		return errors.New("variable store full")
	}
	for i := free; i < align4(free+len(rec)) && i < s.end; i++ {
		if s.img[i] != 0xFF {
			return fmt.Errorf("store not erased at 0x%x", i)
		}
	}
	copy(s.img[free:], rec)
	return nil
}

// ErrNotOVMFVars means the image is not an edk2 authenticated variable store.
var ErrNotOVMFVars = errors.New("not an OVMF variable store")

// EnrollSecureBoot returns a copy of a blank OVMF VARS image with the
// platform's PK, KEK and db (EFI signature lists) enrolled as time-based
// authenticated variables stamped t, Secure Boot enabled and custom mode off.
// The firmware then boots in user mode and enforces signatures.
func EnrollSecureBoot(blank, pk, kek, db []byte, t time.Time) ([]byte, error) {
	img := append([]byte(nil), blank...)
	s, err := open(img)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotOVMFVars, err)
	}
	ts := efiTime(t)
	const authAttr = attrNV | attrBS | attrRT | attrTimeAuth
	for _, v := range []struct {
		name   string
		data   []byte
		vendor efi.GUID
	}{{"PK", pk, efi.GlobalVariable}, {"KEK", kek, efi.GlobalVariable}, {"db", db, efi.ImageSecurityDatabase}} {
		if len(v.data) == 0 {
			return nil, fmt.Errorf("enroll %s: empty signature list", v.name)
		}
		if err := s.add(v.name, v.vendor, authAttr, ts, v.data); err != nil {
			return nil, fmt.Errorf("enroll %s: %w", v.name, err)
		}
	}
	if err := s.add("SecureBootEnable", guidSecureBootEnable, attrNV|attrBS, nil, []byte{1}); err != nil {
		return nil, err
	}
	if err := s.add("CustomMode", guidCustomMode, attrNV|attrBS, nil, []byte{0}); err != nil {
		return nil, err
	}
	return img, nil
}

// Variable is one variable of a store, for inspection and tests.
type Variable struct {
	Name   string
	Vendor string
	Attr   uint32
	Data   []byte
}

// ListVariables returns the variables recorded in a VARS image.
func ListVariables(img []byte) ([]Variable, error) {
	s, err := open(img)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotOVMFVars, err)
	}
	vars, _ := s.walk()
	out := make([]Variable, 0, len(vars))
	for _, v := range vars {
		if v.state == varAdded {
			out = append(out, Variable{Name: v.name, Vendor: v.vendor.String(), Attr: v.attr, Data: append([]byte(nil), v.data...)})
		}
	}
	return out, nil
}
