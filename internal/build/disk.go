package build

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/manifest"
)

// Partition type UUIDs of the UAPI Discoverable Partitions Specification (x86-64).
const (
	TypeESP        = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	TypeRoot       = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
	TypeRootVerity = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
	TypeVar        = "4d21b016-b534-45c2-a9fb-5c16e091fd2d" // state
	TypeSrv        = "3b8f8425-20e0-4f3b-907f-1a25a76f98e8" // data
)

const mib = 1 << 20

// DerivedUUID makes a stable UUID (version 4 layout) from a seed, so the
// same build inputs give the same disk and partition identifiers.
func DerivedUUID(seed ...string) string {
	h := sha256.Sum256([]byte(strings.Join(seed, "\x00")))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// MakeDisk writes a GPT raw disk image with sfdisk (from a script with every
// identifier fixed, so it is reproducible) and the partitions' contents.
func MakeDisk(ctx context.Context, out, diskGUID string, parts []manifest.Partition) error {
	var script strings.Builder
	fmt.Fprintf(&script, "label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: 2048\n", diskGUID)
	start := int64(mib)
	offsets := make([]int64, len(parts))
	for i, p := range parts {
		if p.Content != "" {
			st, err := os.Stat(p.Content)
			if err != nil {
				return fmt.Errorf("disk partition %s: %w", p.Label, err)
			}
			if st.Size() > p.SizeMiB*mib {
				return fmt.Errorf("disk partition %s: content %s is %d bytes, larger than the %d MiB partition", p.Label, p.Content, st.Size(), p.SizeMiB)
			}
		}
		offsets[i] = start
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s, uuid=%s, name=%q\n", start/512, p.SizeMiB*mib/512, p.Type, p.UUID, p.Label)
		start += p.SizeMiB * mib
	}
	total := start + mib // room for the backup GPT
	return durable.Produce(out, func(tmp string) error {
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(total); err != nil {
			return err
		}
		cmd := []string{"--no-reread", "--no-tell-kernel", "--quiet", tmp}
		if err := runToolStdin(ctx, script.String(), "sfdisk", cmd...); err != nil {
			return fmt.Errorf("partition %s: %w", out, err)
		}
		for i, p := range parts {
			if p.Content == "" {
				continue
			}
			if err := copyAt(f, p.Content, offsets[i]); err != nil {
				return fmt.Errorf("write partition %s: %w", p.Label, err)
			}
		}
		return f.Close()
	})
}

// copyAt copies src into dst at off, skipping all-zero blocks: dst was
// truncated to size, so skipped blocks read back as zeros and the raw image
// stays sparse (mostly empty ext4 partitions cost nothing on disk).
func copyAt(dst *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	buf := make([]byte, 64<<10)
	for pos := off; ; {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := dst.WriteAt(buf[:n], pos); werr != nil {
				return werr
			}
		}
		pos += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ESPFile is one file to put on the ESP.
type ESPFile struct{ Src, Dst string } // Dst like EFI/BOOT/BOOTX64.EFI

// MakeESP builds a FAT32 image with mkfs.vfat --invariant and mtools, which
// honour SOURCE_DATE_EPOCH, so the image is reproducible.
func MakeESP(ctx context.Context, out string, sizeMiB int64, volumeID string, epoch int64, files []ESPFile) error {
	return durable.Produce(out, func(tmp string) error { return makeESP(ctx, tmp, sizeMiB, volumeID, epoch, files) })
}

func makeESP(ctx context.Context, tmp string, sizeMiB int64, volumeID string, epoch int64, files []ESPFile) error {
	if err := emptyImage(tmp, sizeMiB); err != nil {
		return err
	}
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10), "MTOOLS_SKIP_CHECK=1"}
	if _, err := runTool(ctx, env, "mkfs.vfat", "-F", "32", "-n", "ESP", "-i", volumeID, "--invariant", tmp); err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	made := map[string]bool{}
	for _, f := range files {
		dirs := strings.Split(f.Dst, "/")
		for i := 1; i < len(dirs); i++ {
			d := strings.Join(dirs[:i], "/")
			if !made[d] {
				if _, err := runTool(ctx, env, "mmd", "-i", tmp, "::/"+d); err != nil {
					return fmt.Errorf("ESP: %w", err)
				}
				made[d] = true
			}
		}
		if _, err := runTool(ctx, env, "mcopy", "-i", tmp, f.Src, "::/"+f.Dst); err != nil {
			return fmt.Errorf("ESP: %w", err)
		}
	}
	return nil
}

// MakeStateFS formats the empty state (or data) filesystem and returns it in
// earlyboot's sparse format (its non-zero blocks) for the initrd:
// kubedos-init writes it through the encrypted mapping at first boot, so
// the disk image's state partition stays blank. Inode tables and journal
// are left unwritten (lazy init: ext4 zeroes them itself or never reads
// them) and there is no resize inode (its reserved blocks would have to
// read as zero): the image is a few hundred KiB of metadata.
func MakeStateFS(ctx context.Context, work, label, uuid string, sizeMiB, epoch int64) ([]byte, error) {
	img := filepath.Join(work, label+"-fs.img")
	if err := emptyImage(img, sizeMiB); err != nil {
		return nil, err
	}
	defer os.Remove(img)
	env := []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(epoch, 10)}
	if _, err := runTool(ctx, env, "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", label, "-U", uuid, "-O", "^resize_inode",
		"-E", "hash_seed="+uuid+",lazy_itable_init=1,lazy_journal_init=1,nodiscard", "-m", "0", img); err != nil {
		return nil, fmt.Errorf("format the %s filesystem: %w", label, err)
	}
	f, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return earlyboot.EncodeSparse(f, sizeMiB*mib)
}

// emptyImage creates a sparse file of sizeMiB for a filesystem tool to
// format.
func emptyImage(path string, sizeMiB int64) error {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return err
	}
	return os.Truncate(path, sizeMiB*mib)
}
