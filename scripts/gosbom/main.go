// Command gosbom writes the CycloneDX SBOM of a Go binary from the build
// information it carries (what `go version -m` prints): every module with
// its version, go.sum hash and, from the module cache, its license.
//
//	go run ./scripts/gosbom -o kube.cdx.json [-modcache DIR] [-version V] BINARY
//
// scripts/kube-build.sh runs it on the Kubernetes binary.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/build"
)

func main() {
	out := flag.String("o", "", "write the SBOM (CycloneDX JSON) here")
	modcache := flag.String("modcache", "", "GOMODCACHE to read licenses from (none: no licenses)")
	version := flag.String("version", "", "the binary's release, for the SBOM's subject")
	flag.Parse()
	if flag.NArg() != 1 || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: gosbom -o OUT.json [-modcache DIR] [-version V] BINARY")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *out, *modcache, *version); err != nil {
		fmt.Fprintln(os.Stderr, "gosbom:", err)
		os.Exit(1)
	}
}

func run(bin, out, modcache, version string) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", bin, err)
	}
	bi, err := build.ReadGoBinary(bin)
	if err != nil {
		return err
	}
	bom, unknown, err := build.GoBinarySBOM(bi, filepath.Base(bin), hex.EncodeToString(h.Sum(nil)), modcache)
	if err != nil {
		return err
	}
	bom.Metadata.Component.Version = version
	if len(unknown) > 0 {
		fmt.Fprintf(os.Stderr, "gosbom: %d modules with a license to read by hand: %s\n", len(unknown), strings.Join(unknown, " "))
	}
	fmt.Fprintf(os.Stderr, "gosbom: %d components\n", len(*bom.Components))
	return build.WriteSBOM(bom, out)
}
