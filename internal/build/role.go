package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/manifest"
)

// ImageSigner holds the keys an image is signed with: the db key
// Authenticode-signs EFI binaries, the PCR policy key signs the PCR 11
// values of the UKI (internal/tpmseal).
type ImageSigner interface {
	SignPE(ctx context.Context, in, out string) error
	// PCRPolicyPEM is the PCR policy key's public half, carried in the
	// UKI's .pcrpkey section.
	PCRPolicyPEM() []byte
	// SignPCR11 gives the .pcrsig of the UKI at path: its PCR 11 values,
	// signed (PCRSig).
	SignPCR11(uki string) ([]byte, error)
}

// ImageInput is everything one role's bootable image is made from, after
// its root filesystem exists.
type ImageInput struct {
	Role   string
	RoleID string // content address of the role's inputs (hex); names the image
	Rootfs string
	Init   string // static kubedos-init binary
	Epoch  int64
	Signer ImageSigner
	// EnrollKeys, when set, is a directory with PK.auth, KEK.auth and db.auth
	// that systemd-boot enrolls on a firmware in setup mode.
	EnrollKeys string
	Out        string // output directory (created)
	Progress   func(step string)
}

// Output file names inside a role's directory.
const (
	FileRoot      = "root.squashfs"
	FileVerity    = "root.verity"
	FileUKI       = "kubedos.efi"
	FileBootEFI   = "systemd-bootx64.efi"
	FileInitrd    = "initrd.cpio.gz"
	FileDiskRaw   = "disk.raw"
	FileDiskQcow2 = "disk.qcow2"
	FileCmdline   = "cmdline.txt"
)

// Partition sizes. Slots leave half again the image's size for growth, so
// an upgrade to a somewhat larger root still fits.
const (
	espMiB   = 64
	stateMiB = 64
	dataMiB  = 256
)

// ImageResult describes a built role image.
type ImageResult struct {
	Kernel     string               `json:"kernel"`
	Cmdline    string               `json:"cmdline"`
	Verity     earlyboot.Config     `json:"verity"`
	UKIName    string               `json:"ukiName"` // path on the ESP
	Partitions []manifest.Partition `json:"partitions"`
	Files      map[string]string    `json:"-"` // name → path
}

// BaseCmdline is the kernel command line around the kubedos keys: serial
// console, and reboot on panic at once (a verity failure panics the kernel).
const BaseCmdline = "console=ttyS0,115200 panic=-1 quiet"

// BuildImage makes one role's verity root, initrd, signed UKI and boot
// loader, and its GPT disk image (raw and qcow2).
func BuildImage(ctx context.Context, in ImageInput) (*ImageResult, error) {
	step := func(s string) {
		if in.Progress != nil {
			in.Progress(s)
		}
	}
	if err := os.MkdirAll(in.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(in.Out, ".work-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out := func(name string) string { return filepath.Join(in.Out, name) }
	kernel, modDir, kver, err := KernelOf(in.Rootfs)
	if err != nil {
		return nil, err
	}
	step("squashfs")
	size, err := MakeSquashfs(ctx, in.Rootfs, out(FileRoot), in.Epoch)
	if err != nil {
		return nil, err
	}
	step("verity")
	salt := hexSum(in.RoleID, "verity-salt")
	rootHash, err := MakeVerity(ctx, out(FileRoot), out(FileVerity), salt, DerivedUUID(in.RoleID, "verity-superblock"))
	if err != nil {
		return nil, err
	}
	cfg := earlyboot.Config{Build: in.RoleID, RootHash: rootHash, Salt: salt, DataBlocks: uint64(size / VerityBlock)}
	cmdline := BaseCmdline + " " + cfg.Cmdline()
	if err := durable.WriteFile(out(FileCmdline), []byte(cmdline+"\n"), 0o644); err != nil {
		return nil, err
	}
	step("initrd")
	// The state partition is blank on the disk: kubedos-init encrypts it at
	// first boot and writes this filesystem into it (earlyboot.OpenState).
	stateFS, err := MakeStateFS(ctx, work, earlyboot.LabelState, DerivedUUID(in.RoleID, "state-fs"), stateMiB-earlyboot.StateDataOffset/mib, in.Epoch)
	if err != nil {
		return nil, err
	}
	// The data partition likewise (issue 14 item 8): blank on the disk, its
	// own key, made at first boot.
	dataFS, err := MakeStateFS(ctx, work, earlyboot.LabelData, DerivedUUID(in.RoleID, "data-fs"), dataMiB-earlyboot.StateDataOffset/mib, in.Epoch)
	if err != nil {
		return nil, err
	}
	if err := BuildInitrd(InitrdInput{InitBinary: in.Init, ModulesDir: modDir, Modules: InitrdModules, StateFS: stateFS, DataFS: dataFS}, out(FileInitrd)); err != nil {
		return nil, err
	}
	step("uki")
	osrel, err := osRelease(in.Rootfs, in.Role, in.RoleID)
	if err != nil {
		return nil, err
	}
	unsigned := filepath.Join(work, "uki.efi")
	if err := MakeUKI(ctx, UKIInput{Stub: filepath.Join(in.Rootfs, "usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
		Kernel: kernel, Initrd: out(FileInitrd), Cmdline: cmdline, OSRel: osrel, PCRPKey: in.Signer.PCRPolicyPEM()}, unsigned); err != nil {
		return nil, err
	}
	// Every section systemd-stub measures is in place, so PCR 11 is known:
	// sign its value at each boot phase and add the signatures as .pcrsig,
	// the one section the stub does not measure.
	pcrsig, err := in.Signer.SignPCR11(unsigned)
	if err != nil {
		return nil, err
	}
	withSig := filepath.Join(work, "uki-pcrsig.efi")
	if err := AddUKISection(ctx, unsigned, ".pcrsig", pcrsig, withSig); err != nil {
		return nil, err
	}
	unsigned = withSig
	step("sign")
	if err := in.Signer.SignPE(ctx, unsigned, out(FileUKI)); err != nil {
		return nil, fmt.Errorf("sign UKI: %w", err)
	}
	if err := in.Signer.SignPE(ctx, filepath.Join(in.Rootfs, "usr/lib/systemd/boot/efi/systemd-bootx64.efi"), out(FileBootEFI)); err != nil {
		return nil, fmt.Errorf("sign systemd-boot: %w", err)
	}
	step("disk")
	ukiName := earlyboot.UKIEntryPath(1, in.RoleID, 0)
	loaderConf := filepath.Join(work, "loader.conf")
	conf := "timeout 0\neditor no\n"
	espFiles := []ESPFile{{out(FileBootEFI), "EFI/BOOT/BOOTX64.EFI"}, {out(FileUKI), ukiName}, {loaderConf, "loader/loader.conf"}}
	if in.EnrollKeys != "" {
		conf += "secure-boot-enroll force\n"
		for _, v := range []string{"PK", "KEK", "db"} {
			espFiles = append(espFiles, ESPFile{filepath.Join(in.EnrollKeys, v+".auth"), "loader/keys/kubedos/" + v + ".auth"})
		}
	}
	if err := os.WriteFile(loaderConf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	esp := filepath.Join(work, "esp.img")
	if err := MakeESP(ctx, esp, espMiB, strings.ToUpper(hexSum(in.RoleID, "esp")[:8]), in.Epoch, espFiles); err != nil {
		return nil, err
	}
	verSize, err := fileSize(out(FileVerity))
	if err != nil {
		return nil, err
	}
	rootMiB, verMiB := slotMiB(size, 64), slotMiB(verSize, 8)
	part := func(label, typ string, sz int64, content string) manifest.Partition {
		return manifest.Partition{Label: label, Type: typ, UUID: DerivedUUID(in.RoleID, "part", label), SizeMiB: sz, Content: content}
	}
	// Slot a's UUIDs derive from the root hash: that is how kubedos-init
	// finds the slot the UKI's cmdline names (earlyboot.FindSlot).
	slotA := func(p manifest.Partition, uuid string) manifest.Partition { p.UUID = uuid; return p }
	parts := []manifest.Partition{
		part(earlyboot.LabelESP, TypeESP, espMiB, esp),
		slotA(part(earlyboot.RootLabel("a"), TypeRoot, rootMiB, out(FileRoot)), earlyboot.RootPartUUID(rootHash)),
		slotA(part(earlyboot.VerityLabel("a"), TypeRootVerity, verMiB, out(FileVerity)), earlyboot.VerityPartUUID(rootHash)),
		part(earlyboot.RootLabel("b"), TypeRoot, rootMiB, ""),
		part(earlyboot.VerityLabel("b"), TypeRootVerity, verMiB, ""),
		part(earlyboot.LabelState, TypeVar, stateMiB, ""), // blank: encrypted at first boot
		part(earlyboot.LabelData, TypeSrv, dataMiB, ""),   // blank: encrypted at first boot
	}
	if err := MakeDisk(ctx, out(FileDiskRaw), DerivedUUID(in.RoleID, "disk"), parts); err != nil {
		return nil, err
	}
	err = durable.Produce(out(FileDiskQcow2), func(tmp string) error {
		if _, err := runTool(ctx, nil, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", out(FileDiskRaw), tmp); err != nil {
			return fmt.Errorf("qcow2: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range parts {
		if parts[i].Content != "" {
			parts[i].Content = filepath.Base(parts[i].Content)
		}
	}
	files := map[string]string{}
	for _, f := range []string{FileRoot, FileVerity, FileUKI, FileBootEFI, FileInitrd, FileDiskRaw, FileDiskQcow2, FileCmdline} {
		files[f] = out(f)
	}
	return &ImageResult{Kernel: kver, Cmdline: cmdline, Verity: cfg, UKIName: ukiName, Partitions: parts, Files: files}, nil
}

func hexSum(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// slotMiB is a slot partition's size: 1.5× the image, rounded up to a multiple of step MiB.
func slotMiB(bytes, step int64) int64 {
	m := (bytes*3/2 + mib - 1) / mib
	return (m + step - 1) / step * step
}

// osRelease is the root's os-release with the image's identity added; it
// becomes the UKI's .osrel, which systemd-boot shows and PCR 11 measures.
func osRelease(rootfs, role, roleID string) (string, error) {
	b, err := os.ReadFile(filepath.Join(rootfs, "usr/lib/os-release"))
	if err != nil {
		return "", fmt.Errorf("read os-release of %s: %w", rootfs, err)
	}
	s := strings.TrimRight(string(b), "\n") + "\n"
	// No IMAGE_VERSION: systemd-boot would order entries by it, and build
	// IDs are hashes; entries are ordered by their generation (UKIEntryPath).
	return s + fmt.Sprintf("IMAGE_ID=kubedos-%s\nKUBEDOS_BUILD_ID=%s\n", role, roleID), nil
}
