package build

import (
	"context"
	"fmt"
	"os"
	"regexp"

	"github.com/kubedos/kubedos/internal/durable"
)

var rootHashRE = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]{64})\s*$`)

// MakeVerity writes the dm-verity hash tree of data to hashOut with a fixed
// salt and superblock UUID (both derived from the build inputs, so the tree
// is reproducible) and returns the root hash.
func MakeVerity(ctx context.Context, data, hashOut, salt, uuid string) (string, error) {
	var root string
	err := durable.Produce(hashOut, func(tmp string) error {
		out, err := runTool(ctx, nil, "veritysetup", "format", data, tmp,
			"--hash=sha256", fmt.Sprintf("--data-block-size=%d", VerityBlock), fmt.Sprintf("--hash-block-size=%d", VerityBlock),
			"--salt="+salt, "--uuid="+uuid)
		if err != nil {
			return fmt.Errorf("verity of %s: %w", data, err)
		}
		m := rootHashRE.FindSubmatch(out)
		if m == nil {
			return fmt.Errorf("verity of %s: no root hash in veritysetup output", data)
		}
		root = string(m[1])
		if _, err := padFile(tmp, VerityBlock); err != nil {
			return err
		}
		return os.Chmod(tmp, 0o644) // veritysetup creates it 0600; it is public
	})
	return root, err
}

// CheckVerity asks veritysetup, an independent implementation, whether data
// matches hash under rootHash.
func CheckVerity(ctx context.Context, data, hash, rootHash string) error {
	if _, err := runTool(ctx, nil, "veritysetup", "verify", data, hash, rootHash); err != nil {
		return fmt.Errorf("verify %s against %s: %w", data, rootHash, err)
	}
	return nil
}
