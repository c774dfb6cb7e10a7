package build

import (
	"context"
	"fmt"
	"strings"
)

// toolVersionArgs are the Debian tools whose output bytes a build depends
// on; their versions are part of every role's content address and of the
// provenance.
var toolVersionArgs = map[string][]string{
	"mmdebstrap":  {"--version"},
	"mksquashfs":  {"-version"},
	"veritysetup": {"--version"},
	"objcopy":     {"--version"},
	"sfdisk":      {"--version"},
	"mkfs.ext4":   {"-V"},
	"mkfs.vfat":   {"--help"},
	"mcopy":       {"--version"},
	"qemu-img":    {"--version"},
}

// ToolVersions returns the first line each tool prints about its version.
func ToolVersions(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	var missing []string
	for tool, args := range toolVersionArgs {
		b, err := runToolCombined(ctx, tool, args...)
		if err != nil && len(b) == 0 {
			missing = append(missing, tool)
			continue
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		out[tool] = strings.TrimSpace(line)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("build tools missing: %s (run scripts/setup.sh)", strings.Join(missing, ", "))
	}
	return out, nil
}
