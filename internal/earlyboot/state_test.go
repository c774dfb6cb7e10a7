package earlyboot

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nopClose keeps the simulator open across OpenState's Close.
type nopClose struct{ io.ReadWriter }

func (nopClose) Close() error { return nil }

// fakeState is a state partition in a file and a device mapper that hands
// out a plain file as "the mapping", recording the parameters.
type fakeState struct {
	part, mapped string
	tpm          io.ReadWriter
	maps         []CryptParams
	logs         []string
	fs           []byte
	policy       StatePolicy
}

const testPartSize = 4 << 20

func newFakeState(t *testing.T, tpm io.ReadWriter) *fakeState {
	t.Helper()
	dir := t.TempDir()
	fs := &fakeState{part: filepath.Join(dir, "state"), mapped: filepath.Join(dir, "mapped"), tpm: tpm, policy: bootUKI(t, tpm, "uki build 1")}
	for _, p := range []string{fs.part, fs.mapped} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, testPartSize); err != nil {
			t.Fatal(err)
		}
	}
	img := make([]byte, 2<<20)
	copy(img[1024:], "superblock")
	copy(img[1<<20:], "a directory")
	var err error
	if fs.fs, err = EncodeSparse(bytes.NewReader(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	return fs
}

func (f *fakeState) deps() StateDeps {
	return StateDeps{
		OpenTPM: func() (io.ReadWriteCloser, error) { return nopClose{f.tpm}, nil },
		Rand:    rand.Reader,
		Map: func(name string, p CryptParams) (string, error) {
			if err := p.check(); err != nil {
				return "", err
			}
			f.maps = append(f.maps, p)
			return f.mapped, nil
		},
		FS:     f.fs,
		Policy: f.policy,
		Logf:   func(format string, args ...any) { f.logs = append(f.logs, format) },
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenStateFirstBootThenUnlock(t *testing.T) {
	sim := simTPM(t, 10)
	f := newFakeState(t, sim)
	dev, err := OpenState(f.part, f.deps())
	if err != nil {
		t.Fatal(err)
	}
	if dev != f.mapped || len(f.maps) != 1 {
		t.Fatalf("mapped %q, %d mappings", dev, len(f.maps))
	}
	p := f.maps[0]
	if p.Offset != StateDataOffset || p.Size != testPartSize-StateDataOffset || p.Device != f.part || len(p.Key) != StateKeySize {
		t.Errorf("first boot mapped %s at %d+%d with a %d-byte key", p.Device, p.Offset, p.Size, len(p.Key))
	}
	h, err := ParseStateHeader(readFile(t, f.part)[:StateHeaderSize])
	if err != nil {
		t.Fatalf("header after first boot: %v", err)
	}
	if h.Flags != 0 || h.PCRMask != 1<<7|1<<11 || h.DataOffset != StateDataOffset {
		t.Errorf("header %+v", h)
	}
	// The filesystem went through the mapping, not onto the partition.
	m := readFile(t, f.mapped)
	if !bytes.Equal(m[1024:1034], []byte("superblock")) || !bytes.Equal(m[1<<20:1<<20+11], []byte("a directory")) {
		t.Error("the filesystem was not written through the mapping")
	}
	if bytes.Contains(readFile(t, f.part), []byte("superblock")) {
		t.Error("the filesystem reached the raw partition")
	}
	if bytes.Contains(readFile(t, f.part), p.Key[:16]) {
		t.Error("the key is on the partition in the clear")
	}
	// Every boot after: the same key, nothing written.
	if err := os.WriteFile(f.mapped, make([]byte, testPartSize), 0o600); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, f.part)
	if _, err := OpenState(f.part, f.deps()); err != nil {
		t.Fatal(err)
	}
	if len(f.maps) != 2 || !bytes.Equal(f.maps[1].Key, p.Key) || f.maps[1].Offset != p.Offset || f.maps[1].Size != p.Size {
		t.Fatal("the second boot did not map the same key and extent")
	}
	if !bytes.Equal(readFile(t, f.part), before) || !bytes.Equal(readFile(t, f.mapped), make([]byte, testPartSize)) {
		t.Fatal("the second boot wrote to the state")
	}
	if !strings.Contains(f.logs[len(f.logs)-1], "unlocked") {
		t.Errorf("log: %q", f.logs)
	}
}

// The attack of issue 14 item 8: the disk of an enrolled node in another
// machine (another TPM), or booted with Secure Boot changed (PCR 7). Both
// refuse before mapping anything, and nothing on the disk changes.
func TestOpenStateRefusesOtherTPMAndChangedPCR7(t *testing.T) {
	sim := simTPM(t, 11)
	f := newFakeState(t, sim)
	if _, err := OpenState(f.part, f.deps()); err != nil {
		t.Fatal(err)
	}
	disk := readFile(t, f.part)
	refused := func(name string) {
		t.Helper()
		f.maps = nil
		_, err := OpenState(f.part, f.deps())
		if !errors.Is(err, ErrStateSealed) {
			t.Fatalf("%s: err = %v, want ErrStateSealed", name, err)
		}
		want := "state: the TPM refused to unseal the state key (PCR 7,11 policy): this disk was not sealed on this machine, Secure Boot changed, or this UKI is not signed for it"
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: message %q, want it to start %q", name, err, want)
		}
		if len(f.maps) != 0 {
			t.Errorf("%s: mapped the state anyway", name)
		}
		if !bytes.Equal(readFile(t, f.part), disk) {
			t.Fatalf("%s: the partition changed", name)
		}
	}
	extendPCR7(t, sim)
	refused("PCR 7 changed")
	sim.Close()
	f.tpm = simTPM(t, 12)
	bootUKI(t, f.tpm, "uki build 1") // the same UKI, signed: only the TPM differs
	refused("another TPM")
}

func TestOpenStateRefusesToFormatOver(t *testing.T) {
	sim := simTPM(t, 13)
	for name, damage := range map[string]func(t *testing.T, f *fakeState){
		// A header zeroed over an encrypted volume is not a blank disk.
		"wiped header": func(t *testing.T, f *fakeState) {
			if _, err := OpenState(f.part, f.deps()); err != nil {
				t.Fatal(err)
			}
			writeAt(t, f.part, make([]byte, StateHeaderSize), 0)
			writeAt(t, f.part, []byte("ciphertext"), StateDataOffset)
		},
		"torn header": func(t *testing.T, f *fakeState) {
			if _, err := OpenState(f.part, f.deps()); err != nil {
				t.Fatal(err)
			}
			// A first write cut after one sector: the rest reads as before (zeros).
			writeAt(t, f.part, make([]byte, StateHeaderSize-512), 512)
		},
		"plaintext ext4": func(t *testing.T, f *fakeState) { writeAt(t, f.part, []byte{0x53, 0xef}, 1080) },
		"other data":     func(t *testing.T, f *fakeState) { writeAt(t, f.part, []byte("LUKS\xba\xbe"), 0) },
	} {
		f := newFakeState(t, sim)
		damage(t, f)
		disk := readFile(t, f.part)
		f.maps = nil
		_, err := OpenState(f.part, f.deps())
		if err == nil || !strings.Contains(err.Error(), "refusing to format over it") {
			t.Errorf("%s: err = %v, want a refusal", name, err)
		}
		if len(f.maps) != 0 || !bytes.Equal(readFile(t, f.part), disk) {
			t.Errorf("%s: the state was mapped or changed", name)
		}
	}
}

// A power cut after the header but before the filesystem: the next boot
// finishes the format with the sealed key instead of refusing or starting
// over.
func TestOpenStateFinishesInterruptedFormat(t *testing.T) {
	sim := simTPM(t, 14)
	f := newFakeState(t, sim)
	if _, err := OpenState(f.part, f.deps()); err != nil {
		t.Fatal(err)
	}
	h, _ := ParseStateHeader(readFile(t, f.part)[:StateHeaderSize])
	h.Flags = stateFlagFormatting
	b, _ := MarshalStateHeader(h)
	writeAt(t, f.part, b, 0)
	if err := os.WriteFile(f.mapped, make([]byte, testPartSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(f.part, f.deps()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.maps[0].Key, f.maps[1].Key) {
		t.Fatal("the format was finished with another key")
	}
	if m := readFile(t, f.mapped); !bytes.Equal(m[1024:1034], []byte("superblock")) {
		t.Fatal("the filesystem was not written")
	}
	if h, _ := ParseStateHeader(readFile(t, f.part)[:StateHeaderSize]); h.Flags != 0 {
		t.Fatal("the formatting flag stayed")
	}
}

func TestOpenStateTooSmall(t *testing.T) {
	f := newFakeState(t, simTPM(t, 15))
	if err := os.Truncate(f.part, 2<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(f.part, f.deps()); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("err = %v", err)
	}
	if b := readFile(t, f.part); !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatal("a refused first boot wrote to the partition")
	}
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// The attack of issue 14 item 8's second half: on the same machine, a UKI
// that the firmware runs (signed with the platform's db key) but whose PCR
// 11 the PCR policy key never signed. The state stays locked, unmapped and
// unchanged, and the console says which.
func TestOpenStateRefusesUnsignedUKI(t *testing.T) {
	sim := simTPM(t, 14)
	f := newFakeState(t, sim)
	if _, err := OpenState(f.part, f.deps()); err != nil {
		t.Fatal(err)
	}
	disk := readFile(t, f.part)
	bootUKI(t, sim, "a changed UKI re-signed with the db key") // f.policy still signs the old PCR 11
	f.maps = nil
	_, err := OpenState(f.part, f.deps())
	if !errors.Is(err, ErrStateSealed) || !strings.Contains(err.Error(), "this UKI is not one the platform's PCR policy key signed") {
		t.Fatalf("err = %v, want the unsigned-UKI refusal", err)
	}
	if len(f.maps) != 0 || !bytes.Equal(readFile(t, f.part), disk) {
		t.Fatal("the state was mapped or changed")
	}
	// The same disk with no policy at all (a UKI without .pcrsig): locked.
	f.policy = StatePolicy{}
	if _, err := OpenState(f.part, f.deps()); !errors.Is(err, ErrStateSealed) {
		t.Fatalf("no policy: %v", err)
	}
}
