package measure

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStub257Recorded: PCR 11 as systemd-measure 257 (257.13-1~deb13u1,
// trixie's) computes it, recorded because this host's is 252:
//
//	systemd-measure calculate --bank=sha256 --json=short --phase= \
//	  --phase=sysinit --phase=sysinit:ready --pcrpkey=F --sbat=F ... --linux=F
//
// with the files below, the flags given in reverse order so that the table's
// order, not the command line's, is what is checked. The kubedos set is what
// every trixie UKI has: the stub's own .sbat sits between .initrd and
// .pcrpkey, which is what made a trixie node's PCR 11 differ from a 252
// prediction.
func TestStub257Recorded(t *testing.T) {
	content := map[string][]byte{
		".linux":   bytes.Repeat([]byte("MZ kernel "), 3000),
		".osrel":   []byte("ID=kubedos\nVERSION_ID=1\n"),
		".cmdline": []byte("root=PARTLABEL=root-a kubedos.roothash=00ff"),
		".initrd":  bytes.Repeat([]byte{0x07, 0x07, 0x01}, 5001),
		".ucode":   []byte("GenuineIntel ucode"),
		".splash":  []byte("BM splash"),
		".dtb":     {0xd0, 0x0d, 0xfe, 0xed},
		".uname":   []byte("6.12.117+deb13-cloud-amd64"),
		".sbat":    []byte("sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n"),
		".pcrpkey": []byte("-----BEGIN PUBLIC KEY-----\n"),
	}
	for _, c := range []struct {
		name     string
		sections []string
		phases   [3]string // stub, sysinit, ready
	}{
		{"all measured", []string{".pcrpkey", ".sbat", ".uname", ".dtb", ".splash", ".ucode", ".initrd", ".cmdline", ".osrel", ".linux"}, [3]string{
			"56446830a4d7b8f3ef28bfff373e22cedc13356b3a7da79903dbd939c5acf53c",
			"ca07a251a38df46feeb19e5279b6433e173fd4b21e9717177aaef063ebef9a74",
			"70d6977aab86abbae9f12463a086499780f23b63887121ba9d33d97a7fa31ba4"}},
		{"kubedos", []string{".linux", ".osrel", ".cmdline", ".initrd", ".sbat", ".pcrpkey"}, [3]string{
			"61a718a3f4ee3b2d53ff14511f3e107be8402246c70418dbc28c5aae123d5996",
			"c40ca9689241494094b66b02fb32212a8438cabbfbd9f2c7b2242f942a9d8466",
			"addfad741ca9a2d00d05d013e5fcb99028fa10226a53ac8fc480bab5184a21c8"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var secs []Section
			for _, n := range c.sections {
				secs = append(secs, Section{Name: n, Digest: sum(content[n])})
			}
			events, err := PredictPCR11(Stub257, secs)
			if err != nil {
				t.Fatal(err)
			}
			stub, err := Replay(events)
			if err != nil {
				t.Fatal(err)
			}
			for i, ph := range BootPhases {
				if got := fmt.Sprintf("%x", PCR11AtPhase(stub, ph.Words...)); got != c.phases[i] {
					t.Errorf("phase %s: we %s, systemd-measure 257 %s", ph.Name, got, c.phases[i])
				}
			}
			// 252 does not measure .sbat: a 252 table must not take it.
			if _, err := PredictPCR11(Stub252, secs); !errors.Is(err, ErrInput) {
				t.Errorf("systemd-stub 252 table took %v: %v", c.sections, err)
			}
		})
	}
}

func TestParseStubMagic(t *testing.T) {
	for _, c := range []struct {
		magic string
		want  int // 0: refused
	}{
		{"#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####", 252},
		{"#### LoaderInfo: systemd-stub 257.13-1~deb13u1 ####", 257},
		{"#### LoaderInfo: systemd-stub 258 ####", 258},
		{"#### LoaderInfo: systemd-boot 257.13-1~deb13u1 ####", 0},
		{"#### LoaderInfo: systemd-stub v257 ####", 0},
		{"#### LoaderInfo: systemd-stub 1234567 ####", 0},
		{"", 0},
	} {
		got, err := ParseStubMagic(c.magic)
		if c.want == 0 {
			if !errors.Is(err, ErrInput) {
				t.Errorf("%q: %d, %v; want refused", c.magic, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %d, %v; want %d", c.magic, got, err, c.want)
		}
	}
	for _, v := range []int{252, 257} {
		if s, err := StubRelease(v); err != nil || s.Version != v {
			t.Errorf("StubRelease(%d) = %v, %v", v, s, err)
		}
	}
	// A release never checked against a booted node is refused, not
	// predicted with a neighbour's table.
	for _, v := range []int{249, 255, 258} {
		if _, err := StubRelease(v); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), fmt.Sprint(v)) {
			t.Errorf("StubRelease(%d): %v, want a refusal naming it", v, err)
		}
	}
}

// stub257 makes a systemd-stub 257 look-alike from this host's 252 stub
// (its .sdmagic rewritten): enough for SectionsFromPE, which reads the
// release there, and for its .sbat, which 257 measures.
func stub257(t *testing.T, dir string) (path string, sbat []byte) {
	t.Helper()
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("objcopy not installed (binutils)")
	}
	f, err := pe.Open(stubPath)
	if err != nil {
		t.Skip("systemd-stub not installed (systemd-boot-efi)")
	}
	defer f.Close()
	magic, _ := f.Section(".sdmagic").Data()
	if !bytes.Contains(magic, []byte("systemd-stub 252")) {
		t.Skipf("%s is not systemd-stub 252: %q", stubPath, magic)
	}
	s := f.Section(".sbat")
	raw, _ := s.Data()
	sbat = raw[:min(uint32(len(raw)), s.VirtualSize)]
	m := filepath.Join(dir, "sdmagic")
	if err := os.WriteFile(m, bytes.Replace(magic, []byte("systemd-stub 252"), []byte("systemd-stub 257"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "stub257.efi")
	if b, err := exec.Command(objcopy, "--update-section", ".sdmagic="+m, stubPath, path).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v: %s", err, b)
	}
	return path, sbat
}

// TestSectionsFromPE257: on a 257 stub the stub's .sbat is measured, a
// section is taken by its whole name only (".dtbfoo" is not ".dtb", as it
// would be for 252), and sections whose measurement is not modelled, or a
// measured one given twice, make the UKI refused.
func TestSectionsFromPE257(t *testing.T) {
	dir := t.TempDir()
	stub, sbat := stub257(t, dir)
	base := []struct{ name, content string }{{".osrel", "ID=kubedos\n"}, {".cmdline", "console=ttyS0"}, {".linux", "MZ kernel"}, {".initrd", "070701 initrd"}}
	build := func(t *testing.T, extra ...struct{ name, content string }) string {
		t.Helper()
		args := []string{}
		vma := 0x40000
		for i, s := range append(base, extra...) {
			f := filepath.Join(dir, fmt.Sprintf("s%d", i))
			if err := os.WriteFile(f, []byte(s.content), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--add-section", s.name+"="+f, "--change-section-vma", fmt.Sprintf("%s=0x%x", s.name, vma))
			vma += 0x1000
		}
		out := filepath.Join(dir, t.Name()[strings.LastIndex(t.Name(), "/")+1:]+".efi")
		if b, err := exec.Command("objcopy", append(args, stub, out)...).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v: %s", err, b)
		}
		return out
	}
	read := func(path string) (Stub, []Section, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return SectionsFromPE(bytes.NewReader(b))
	}
	t.Run("kubedos", func(t *testing.T) {
		release, got, err := read(build(t, struct{ name, content string }{".dtbfoo", "not a dtb"}))
		if err != nil {
			t.Fatal(err)
		}
		if release.Version != 257 {
			t.Fatalf("read as systemd-stub %d", release.Version)
		}
		h := func(s string) Digest { d := sha256.Sum256([]byte(s)); return d[:] }
		want := []Section{{".linux", h("MZ kernel")}, {".osrel", h("ID=kubedos\n")}, {".cmdline", h("console=ttyS0")},
			{".initrd", h("070701 initrd")}, {".sbat", h(string(sbat))}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("sections\n got %v\nwant %v", got, want)
		}
	})
	for _, c := range []struct {
		name  string
		extra struct{ name, content string }
		want  string
	}{
		{"hwids", struct{ name, content string }{".hwids", "x"}, ".hwids section"},
		{"profile", struct{ name, content string }{".profile", "ID=x"}, ".profile section"},
		// objcopy refuses a second .cmdline: ".cmdlinX" is renamed in
		// the section table below.
		{"twice", struct{ name, content string }{".cmdlinX", "quiet"}, ".cmdline twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := build(t, c.extra)
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(".cmdlinX")) {
				if err := os.WriteFile(path, bytes.Replace(b, []byte(".cmdlinX"), []byte(".cmdline"), 1), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, secs, err := read(path)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("sections %v, err %v; want a refusal naming %q", secs, err, c.want)
			}
		})
	}
}
