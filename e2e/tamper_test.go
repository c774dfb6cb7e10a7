//go:build e2e

package e2e

import (
	"bytes"
	"debug/pe"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/sign"
)

// espOffset is where MakeDisk puts the ESP (partition 1 at 1 MiB).
const espOffset = "@@1048576"

// How withChangedUKI signs the changed UKI.
type resignMode int

const (
	keepSignature resignMode = iota // the original Authenticode signature, now wrong
	dbKey                           // re-signed with the platform's db key
	dbAndPCRKeys                    // and its .pcrsig re-signed with the PCR policy key
)

// withChangedUKI returns a raw copy of the built disk whose UKI on the ESP
// has one byte of its .cmdline changed ("quiet" becomes "quieT"), re-signed
// as mode says.
func withChangedUKI(t *testing.T, c *cluster, name string, mode resignMode) string {
	t.Helper()
	dir := filepath.Join(work, "tamper-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.raw")
	tool(t, "cp", "--sparse=always", c.role(build.FileDiskRaw), disk)
	uki := filepath.Join(dir, "uki.efi")
	onESP := "::/" + c.manifest.Roles["master"].UKIPath
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	tool(t, "mcopy", "-n", "-i", disk+espOffset, onESP, uki)
	b, err := os.ReadFile(uki)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section(".cmdline")
	if sec == nil {
		t.Fatal("UKI has no .cmdline")
	}
	start := int(sec.Offset)
	i := bytes.Index(b[start:start+int(sec.Size)], []byte("quiet"))
	if i < 0 {
		t.Fatalf(".cmdline has no 'quiet' to change")
	}
	b[start+i+4] = 'T'
	if mode == dbAndPCRKeys {
		resignPCRSig(t, c, f, b, dir)
	}
	if mode != keepSignature {
		ks, err := sign.LoadKeySet(filepath.Join(c.dir, "keys"))
		if err != nil {
			t.Fatal(err)
		}
		key, err := sign.ReadPrivateKey(ks.Path(sign.FileDBKey))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = sign.SignPEImage(b, ks.DB, key); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(uki, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "mcopy", "-o", "-i", disk+espOffset, uki, onESP)
	return disk
}

// resignPCRSig replaces, in place, the .pcrsig of the changed UKI b with
// signatures of its own PCR 11 values by the platform's PCR policy key:
// what an attacker holding that key too would do. The file is the same
// length (the entries are fixed-size).
func resignPCRSig(t *testing.T, c *cluster, f *pe.File, b []byte, dir string) {
	t.Helper()
	tmp := filepath.Join(dir, "changed.efi")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ks, err := sign.LoadKeySet(filepath.Join(c.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ks.PCRPolicyKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := build.PCRSig(tmp, key)
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section(".pcrsig")
	if sec == nil || int(sec.VirtualSize) != len(raw) {
		t.Fatalf(".pcrsig missing or of another size than %d bytes: %+v", len(raw), sec)
	}
	copy(b[sec.Offset:], raw)
}

// TestChangedUKIUnsigned: one changed byte breaks the Authenticode
// signature, so the firmware refuses to run the UKI at all.
func TestChangedUKIUnsigned(t *testing.T) {
	c := manufacture(t)
	st, console := bootDisk(t, c, "changed-unsigned", withChangedUKI(t, c, "unsigned", keepSignature))
	if st != nil {
		t.Fatalf("a UKI with a changed byte booted under Secure Boot: %+v", st)
	}
	if !refusedRE.MatchString(console) {
		t.Fatalf("expected the firmware to refuse the UKI:\n%s", lastLines(console, 20))
	}
	t.Log("outcome: firmware refused the changed UKI (Access Denied); it never ran")
}

// TestChangedUKIResigned: re-signed with the platform's own db key, the
// changed UKI passes Secure Boot (the firmware runs it), but its PCR 11 is
// not one the platform's PCR policy key signed: kubedos-init refuses to seal
// a state key under it (it could never unlock one), so the node stops
// before systemd with no identity. (An attacker holding the PCR policy key
// too gets past kubedos-init; TestEnrollmentGate shows the hub refusing that
// UKI's PCR 11 against the signed manifest.)
func TestChangedUKIResigned(t *testing.T) {
	c := manufacture(t)
	st, console := bootDisk(t, c, "changed-resigned", withChangedUKI(t, c, "resigned", dbKey))
	if st != nil {
		t.Fatalf("a UKI the PCR policy key did not sign came up: %+v", st)
	}
	if !strings.Contains(console, "kubedos-init: build ") {
		t.Fatalf("the firmware did not run the re-signed UKI:\n%s", lastLines(console, 30))
	}
	if !unsignedUKIRE.MatchString(console) {
		t.Fatalf("no refusal of the unsigned PCR 11 on the console:\n%s", lastLines(console, 30))
	}
	t.Logf("outcome: the re-signed UKI boots to kubedos-init, which refuses it: %s", unsignedUKIRE.FindString(console))
}

// unsignedUKIRE is kubedos-init refusing a UKI whose PCR 11 the PCR policy
// key did not sign, at first boot.
var unsignedUKIRE = regexp.MustCompile(`kubedos-init: FATAL: state: PCR 11 is not a value the PCR policy key signed \(PCR 11 [0-9a-f]{64}, 3 signed values\): refusing to seal the state key`)

// TestCorruptRootRefused: one changed byte in the root partition fails
// dm-verity when the root is mounted, and the node does not come up.
func TestCorruptRootRefused(t *testing.T) {
	c := manufacture(t)
	dir := filepath.Join(work, "tamper-root")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.raw")
	tool(t, "cp", "--sparse=always", c.role(build.FileDiskRaw), disk)
	var start int64 = -1
	off := int64(1 << 20) // partitions follow the 1 MiB GPT area in manifest order
	for _, p := range c.manifest.Roles["master"].Partitions {
		if p.Label == "root-a" {
			start = off
			break
		}
		off += p.SizeMiB << 20
	}
	if start < 0 {
		t.Fatal("no root-a partition in the manifest")
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	// Byte 100 is in the squashfs superblock, read as soon as the root is mounted.
	if _, err := f.ReadAt(b, start+100); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, start+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, console := bootDisk(t, c, "corrupt-root", disk)
	if st != nil {
		t.Fatalf("a node with a corrupted root reported status: %+v", st)
	}
	if !regexp.MustCompile(`device-mapper: verity: .* is corrupted|Kernel panic - not syncing: dm-verity device corrupted`).MatchString(console) {
		t.Fatalf("no verity failure on the console:\n%s", lastLines(console, 20))
	}
	t.Log("outcome: dm-verity refused the corrupted root; the node never reached systemd")
}
