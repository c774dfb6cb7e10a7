package bundle

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/modproxy"
)

// DirKube and DirCoreDNS hold what rebuilds the kube and coredns binaries
// themselves with no network: <dir>/src is the pinned wrapper module (go.mod,
// go.sum, its main), <dir>/proxy a Go module proxy tree
// (GOPROXY=file://…/<dir>/proxy) of every module file that build reads;
// go.sum checks each.
const (
	DirKube    = "kube"
	DirCoreDNS = "coredns"
)

// moduleSourceMembers adds the wrapper module in module under dir/src and,
// under dir/proxy, the proxy files its build of binary reads
// (modproxy.Files). The binary is the one whose digest the caller checked.
func moduleSourceMembers(ctx context.Context, dir, module, binary string, add func(name, file string, mode int64, want string)) error {
	files, err := modproxy.Files(ctx, module, binary)
	if err != nil {
		return err
	}
	err = filepath.WalkDir(module, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(module, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case rel == "go.mod" || rel == "go.sum" || strings.HasSuffix(rel, ".go"):
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s is not a regular file", p)
			}
			add(path.Join(dir, "src", filepath.ToSlash(rel)), p, 0o644, "")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the wrapper module %s: %w", module, err)
	}
	for _, f := range files {
		add(path.Join(dir, "proxy", f.Rel), f.Src, 0o644, "")
	}
	return nil
}
