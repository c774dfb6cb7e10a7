package build

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/manifest"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (run scripts/setup.sh)", tool)
		}
	}
}

func TestCPIOReadableByCpio(t *testing.T) {
	needTools(t, "cpio")
	var buf bytes.Buffer
	err := writeCPIO(&buf, []cpioEntry{
		{Path: "init", Mode: cpioFile | 0o755, Data: []byte("#!/bin/sh\n")},
		{Path: "etc", Mode: cpioDir | 0o755},
		{Path: "etc/kubedos/modules", Mode: cpioFile | 0o644, Data: []byte("a.ko\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio rejects the archive: %v", err)
	}
	if got, want := strings.Fields(string(out)), []string{"etc", "etc/kubedos/modules", "init"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("cpio lists %v, want %v", got, want)
	}
}

func TestDerivedUUID(t *testing.T) {
	a, b := DerivedUUID("x", "root-a"), DerivedUUID("x", "root-a")
	if a != b || a == DerivedUUID("x", "root-b") || len(a) != 36 || a[14] != '4' {
		t.Fatalf("DerivedUUID not stable/distinct/v4: %s %s", a, b)
	}
}

// TestDiskLayout checks the GPT with sfdisk (an independent reader) and with
// the initrd's own reader, and that two runs give identical bytes.
func TestDiskLayout(t *testing.T) {
	needTools(t, "sfdisk")
	dir := t.TempDir()
	content := filepath.Join(dir, "root.img")
	if err := os.WriteFile(content, bytes.Repeat([]byte("R"), 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	parts := []manifest.Partition{
		{Label: "esp", Type: TypeESP, UUID: DerivedUUID("t", "esp"), SizeMiB: 2},
		{Label: "root-a", Type: TypeRoot, UUID: DerivedUUID("t", "root-a"), SizeMiB: 2, Content: content},
		{Label: "verity-a", Type: TypeRootVerity, UUID: DerivedUUID("t", "verity-a"), SizeMiB: 1},
		{Label: "state", Type: TypeVar, UUID: DerivedUUID("t", "state"), SizeMiB: 1},
		{Label: "data", Type: TypeSrv, UUID: DerivedUUID("t", "data"), SizeMiB: 1},
	}
	img1, img2 := filepath.Join(dir, "1.img"), filepath.Join(dir, "2.img")
	for _, img := range []string{img1, img2} {
		if err := MakeDisk(context.Background(), img, DerivedUUID("t", "disk"), parts); err != nil {
			t.Fatal(err)
		}
	}
	b1, _ := os.ReadFile(img1)
	b2, _ := os.ReadFile(img2)
	if !bytes.Equal(b1, b2) {
		t.Fatal("two disk builds differ")
	}
	out, err := exec.Command("sfdisk", "-J", img1).Output()
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		PartitionTable struct {
			Partitions []struct {
				Name, Type, UUID string
				Start            int64
			}
		}
	}
	if err := json.Unmarshal(out, &table); err != nil {
		t.Fatal(err)
	}
	got := table.PartitionTable.Partitions
	if len(got) != len(parts) {
		t.Fatalf("sfdisk sees %d partitions", len(got))
	}
	for i, p := range parts {
		if got[i].Name != p.Label || !strings.EqualFold(got[i].Type, p.Type) || !strings.EqualFold(got[i].UUID, p.UUID) {
			t.Errorf("partition %d: sfdisk sees %+v, want %+v", i+1, got[i], p)
		}
	}
	f, _ := os.Open(img1)
	defer f.Close()
	mine, err := earlyboot.ReadGPT(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range mine {
		if p.Label != parts[i].Label || p.TypeGUID != parts[i].Type || p.PartUUID != parts[i].UUID || p.Number != i+1 {
			t.Errorf("initrd GPT reader: %+v, want %+v", p, parts[i])
		}
	}
	if !bytes.Equal(b1[got[1].Start*512:got[1].Start*512+8192], bytes.Repeat([]byte("R"), 8192)) {
		t.Error("root content not at the start of root-a")
	}
	big := append(parts[:1:1], manifest.Partition{Label: "root-a", Type: TypeRoot, UUID: DerivedUUID("x"), SizeMiB: 0, Content: content})
	if err := MakeDisk(context.Background(), filepath.Join(dir, "3.img"), DerivedUUID("x"), big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized content accepted: %v", err)
	}
}

// TestESPReproducible: the same files give the same ESP image, bit for
// bit (TestSparseStateFSChecks does the state filesystem's).
func TestESPReproducible(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy")
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	_ = os.WriteFile(src, []byte("hello"), 0o644)
	build := func(n string) []byte {
		esp := filepath.Join(dir, n+".esp")
		if err := MakeESP(context.Background(), esp, 34, "4B554245", 1700000000, []ESPFile{{src, "EFI/BOOT/BOOTX64.EFI"}, {src, "loader/loader.conf"}}); err != nil {
			t.Fatal(err)
		}
		a, err := os.ReadFile(esp)
		if err != nil || len(a) == 0 {
			t.Fatalf("ESP image: %d bytes, %v", len(a), err)
		}
		return a
	}
	if !bytes.Equal(build("1"), build("2")) {
		t.Error("ESP images differ")
	}
	out, err := exec.Command("mdir", "-i", filepath.Join(dir, "1.esp"), "::/EFI/BOOT").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "BOOTX64") {
		t.Fatalf("mdir: %v %s", err, out)
	}
}

func TestUKISectionsAlignedAndReproducible(t *testing.T) {
	const stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	if _, err := os.Stat(stub); err != nil {
		t.Skip("systemd-boot-efi not installed")
	}
	needTools(t, "objcopy")
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	_ = os.WriteFile(kernel, bytes.Repeat([]byte{0x4d}, 10000), 0o644)
	_ = os.WriteFile(initrd, bytes.Repeat([]byte{0x1f}, 5000), 0o644)
	in := UKIInput{Stub: stub, Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0", OSRel: "ID=kubedos\n"}
	a, b := filepath.Join(dir, "a.efi"), filepath.Join(dir, "b.efi")
	for _, out := range []string{a, b} {
		if err := MakeUKI(context.Background(), in, out); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two UKI builds differ")
	}
	out, err := exec.Command("objdump", "-h", a).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []string{".osrel", ".cmdline", ".linux", ".initrd"} {
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && f[1] == sec {
				found = true
				if !strings.HasSuffix(f[3], "000") {
					t.Errorf("section %s at VMA %s is not page aligned", sec, f[3])
				}
			}
		}
		if !found {
			t.Errorf("no section %s in UKI", sec)
		}
	}
}
