package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"debug/pe"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/tpmseal"
)

// TestUKIPCRSig: the UKI carries the PCR policy key (.pcrpkey, measured)
// and, in .pcrsig, signatures of exactly the PCR 11 values its measured
// sections give; checkPCRSig accepts it, and refuses the same .pcrsig on a
// UKI whose command line changed, or checked against another key.
func TestUKIPCRSig(t *testing.T) {
	const stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	if _, err := os.Stat(stub); err != nil {
		t.Skip("systemd-boot-efi not installed")
	}
	needTools(t, "objcopy")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpmseal.EncodePublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	_ = os.WriteFile(kernel, bytes.Repeat([]byte{0x4d}, 10000), 0o644)
	_ = os.WriteFile(initrd, bytes.Repeat([]byte{0x1f}, 5000), 0o644)
	ctx := context.Background()
	mk := func(name, cmdline string) (unsigned string, pcrsig []byte) {
		unsigned = filepath.Join(dir, name+".efi")
		if err := MakeUKI(ctx, UKIInput{Stub: stub, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, OSRel: "ID=kubedos\n", PCRPKey: pub}, unsigned); err != nil {
			t.Fatal(err)
		}
		raw, err := PCRSig(unsigned, key)
		if err != nil {
			t.Fatal(err)
		}
		return unsigned, raw
	}
	good, sig := mk("good", "console=ttyS0 quiet")
	signed := filepath.Join(dir, "good-sig.efi")
	if err := AddUKISection(ctx, good, ".pcrsig", sig, signed); err != nil {
		t.Fatal(err)
	}
	// .pcrsig is not measured: adding it leaves PCR 11 as signed.
	before, _ := PCR11Values(good)
	after, _ := PCR11Values(signed)
	if len(after) != 3 || !bytes.Equal(before[0], after[0]) {
		t.Fatalf("PCR 11 changed by adding .pcrsig (%x → %x)", before, after)
	}
	f, err := pe.Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	if s := f.Section(".pcrsig"); s == nil || s.VirtualAddress%sectionAlign != 0 {
		t.Fatalf(".pcrsig missing or not page aligned: %+v", s)
	}
	f.Close()
	if err := checkPCRSig(signed, &key.PublicKey); err != nil {
		t.Fatalf("good UKI: %v", err)
	}
	if err := checkPCRSig(signed, &other.PublicKey); err == nil {
		t.Fatal("checked against another key: accepted")
	}
	// The attack: another command line (a different UKI) carrying the
	// original's signatures.
	evil, _ := mk("evil", "console=ttyS0 quieT")
	evilSigned := filepath.Join(dir, "evil-sig.efi")
	if err := AddUKISection(ctx, evil, ".pcrsig", sig, evilSigned); err != nil {
		t.Fatal(err)
	}
	if err := checkPCRSig(evilSigned, &key.PublicKey); err == nil || !strings.Contains(err.Error(), "approves another PCR 11") {
		t.Fatalf("changed UKI with the original .pcrsig: %v", err)
	}
}
