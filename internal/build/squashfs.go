package build

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/kubedos/kubedos/internal/durable"
)

// SquashfsZstdLevel is the root image's zstd level (see MakeSquashfs).
const SquashfsZstdLevel = "9"

// VerityBlock is the block size of the root image and its hash tree.
const VerityBlock = 4096

// MakeSquashfs packs rootDir into a reproducible squashfs at out: fixed
// timestamps, sorted entries (mksquashfs -reproducible), /boot left out (the
// kernel lives in the UKI). The image is padded to whole verity blocks.
//
// zstd level 9: on a prometheus root (715 MB) level 15 took 81.6 CPU-s and
// level 9 17.1 for 0.8 % more bytes (docs/benchmarks.md); compression was
// the largest per-role cost of a build.
func MakeSquashfs(ctx context.Context, rootDir, out string, epoch int64) (int64, error) {
	ep := strconv.FormatInt(epoch, 10)
	var size int64
	err := durable.Produce(out, func(tmp string) error {
		_, err := runTool(ctx, nil, "mksquashfs", rootDir, tmp,
			"-noappend", "-no-progress", "-quiet", "-reproducible",
			"-comp", "zstd", "-Xcompression-level", SquashfsZstdLevel, "-b", "1M",
			"-mkfs-time", ep, "-all-time", ep,
			"-wildcards", "-e", "boot/*")
		if err != nil {
			return fmt.Errorf("squashfs of %s: %w", rootDir, err)
		}
		size, err = padFile(tmp, VerityBlock)
		return err
	})
	return size, err
}

// padFile extends path with zeros to a multiple of block and returns the new size.
func padFile(path string, block int64) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	size := (st.Size() + block - 1) / block * block
	if err := os.Truncate(path, size); err != nil {
		return 0, fmt.Errorf("pad %s: %w", path, err)
	}
	return size, nil
}
