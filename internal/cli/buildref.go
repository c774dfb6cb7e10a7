package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// resolveBuild turns --build into a build directory: a directory as given,
// or a build-id (or a unique prefix of one) found as <out>/<cluster>/<id>,
// the layout kubedos build writes.
func resolveBuild(ref, out string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("--build is required: a build directory or a build-id under %s", out)
	}
	if fi, err := os.Stat(ref); err == nil && fi.IsDir() {
		return ref, nil
	}
	if strings.ContainsAny(ref, `/\*?[`) {
		return "", fmt.Errorf("--build %s: no such build directory", ref)
	}
	matches, _ := filepath.Glob(filepath.Join(out, "*", ref+"*"))
	var dirs []string
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			dirs = append(dirs, m)
		}
	}
	switch len(dirs) {
	case 1:
		return dirs[0], nil
	case 0:
		return "", fmt.Errorf("--build %s: not a directory, and no build %s* under %s/<cluster>/", ref, ref, out)
	default:
		return "", fmt.Errorf("--build %s is ambiguous: %s", ref, strings.Join(dirs, ", "))
	}
}
