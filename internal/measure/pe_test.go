package measure

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const (
	stubPath = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	protoUKI = "/tmp/proto/out/uki.signed.efi"
)

// TestSectionsFromPE builds a small UKI the way internal/build does (objcopy
// onto systemd-stub 252, page-aligned section addresses) and reads its
// sections back: each digest must be of the exact input bytes, not of the
// padded raw data.
func TestSectionsFromPE(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("objcopy not installed (binutils)")
	}
	if _, err := os.Stat(stubPath); err != nil {
		t.Skip("systemd-stub not installed (systemd-boot-efi)")
	}
	dir := t.TempDir()
	u := UKISections{
		OSRel:   []byte("ID=kubedos\n"),
		Cmdline: []byte("console=ttyS0"), // 13 bytes: the raw data is padded to 512
		Linux:   bytes.Repeat([]byte{0x4d, 0x5a, 0x90}, 1001),
		Initrd:  []byte("070701 initrd"),
	}
	args := []string{}
	vma := 0x40000
	for _, s := range []struct {
		name string
		b    []byte
	}{{".osrel", u.OSRel}, {".cmdline", u.Cmdline}, {".linux", u.Linux}, {".initrd", u.Initrd}} {
		f := filepath.Join(dir, s.name[1:])
		if err := os.WriteFile(f, s.b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--add-section", s.name+"="+f, "--change-section-vma", fmt.Sprintf("%s=0x%x", s.name, vma))
		vma += (len(s.b) + 4095) / 4096 * 4096
	}
	out := filepath.Join(dir, "uki.efi")
	if b, err := exec.Command(objcopy, append(args, stubPath, out)...).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v: %s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	release, got, err := SectionsFromPE(f)
	if err != nil {
		t.Fatal(err)
	}
	if release.Version != 252 {
		t.Skipf("%s is systemd-stub %d (TestSectionsFromPE257 covers 257)", stubPath, release.Version)
	}
	want := u.Sections()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sections\n got %v\nwant %v", got, want)
	}
}

// TestSectionsFromProtoUKI reads the prototype's signed UKI, when present,
// and checks its sections against the digests recorded from its inputs.
func TestSectionsFromProtoUKI(t *testing.T) {
	f, err := os.Open(protoUKI)
	if err != nil {
		t.Skip("prototype UKI not on this machine")
	}
	defer f.Close()
	release, secs, err := SectionsFromPE(f)
	if err != nil {
		t.Fatal(err)
	}
	p := loadProto(t)
	want := p.inputs(t, p.file(t, "cmdline.txt"), p.file(t, "osrel.txt")).Sections
	wantEv, _ := PredictPCR11(Stub252, want)
	gotEv, err := PredictPCR11(release, secs)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := Replay(gotEv); !bytes.Equal(v, p.Phases["stub"]) {
		t.Errorf("PCR 11 from the UKI file %x, booted %s", v, p.Phases["stub"])
	}
	if fmt.Sprint(gotEv) != fmt.Sprint(wantEv) {
		t.Errorf("events differ:\n%v\n%v", gotEv, wantEv)
	}
}

func TestSectionsFromPEBadInput(t *testing.T) {
	if _, _, err := SectionsFromPE(bytes.NewReader([]byte("not a PE file"))); !errors.Is(err, ErrInput) {
		t.Errorf("err = %v", err)
	}
}

// TestRecordedAuthenticode re-derives the recorded Authenticode digests with
// pesign when the prototype's signed images are on this machine.
func TestRecordedAuthenticode(t *testing.T) {
	pesign, err := exec.LookPath("pesign")
	if err != nil {
		t.Skip("pesign not installed")
	}
	p := loadProto(t)
	for name, file := range map[string]string{"systemd-boot": "/tmp/proto/out/sdboot.signed.efi", "uki": protoUKI} {
		if _, err := os.Stat(file); err != nil {
			t.Skip("prototype images not on this machine")
		}
		out, err := exec.Command(pesign, "-h", "-i", file).Output()
		if err != nil {
			t.Fatalf("pesign -h %s: %v", file, err)
		}
		// "hash: <hex>"
		got := string(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(out), []byte("hash:"))))
		if got != p.Authenticode[name].String() {
			t.Errorf("%s: pesign %s, recorded %s", name, got, p.Authenticode[name])
		}
	}
}
