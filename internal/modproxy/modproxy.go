// Package modproxy collects what a Go main module needs to be built with
// no network: the files of a Go module proxy (GOPROXY=file://DIR) holding
// the go.mod of every module version its module graph reaches and the
// source zip of every module its binary links. The recovery bundle carries
// them for the Kubernetes wrapper module (kube/), so the kube binary can be
// rebuilt offline from the bundle. Every file is checked against its
// module hash before it is listed, and go.sum checks every byte again when
// the proxy is used.
package modproxy

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// File is one file of the proxy: Rel is its path in the proxy's tree
// (<escaped module>/@v/<escaped version>.mod|.zip|.info), Src where it is
// on this machine (the module cache's download directory).
type File struct {
	Rel, Src string
}

// ErrMissing: the module cache lacks a file the build needs.
var ErrMissing = errors.New("not in the Go module cache")

// ErrDigest: a file in the module cache is not the one the build read.
var ErrDigest = errors.New("does not match its module hash")

// Files lists the proxy files that build the main module in dir offline,
// each checked before it is listed: the .zip of every module binary links
// (its build info, replacements resolved), against the module hash that
// build info records; and the .mod of every module version go.sum has a
// go.mod hash for that this machine's module cache holds, against go.sum.
// The go command checks every go.mod it reads against go.sum and keeps it
// in the module cache, so those are all the build read, if it ran on this
// machine; `go mod graph` would ask for go.mod files a build never reads
// (and the cache may lack). A linked module's files must be there. No
// .info: nothing can check it and a build at fixed versions never reads
// it. The module cache is `go env GOMODCACHE`'s. Sorted by Rel.
func Files(ctx context.Context, dir, binary string) ([]File, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOMODCACHE")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMODCACHE in %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	cache := filepath.Join(strings.TrimSpace(string(raw)), "cache", "download")
	sums, err := readGoSum(filepath.Join(dir, "go.sum"))
	if err != nil {
		return nil, err
	}
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binary, err)
	}
	linked := map[string]string{} // path@version → the module hash the binary was built from
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		if d.Version == "" || d.Version == "(devel)" {
			continue // a directory replacement: its source is the main module's
		}
		if d.Sum == "" {
			return nil, fmt.Errorf("%s: build info of %s@%s has no module hash", binary, d.Path, d.Version)
		}
		linked[d.Path+"@"+d.Version] = d.Sum
	}
	var out []File
	add := func(pv, ext, want string, need bool) error {
		p, v, _ := strings.Cut(pv, "@")
		rel := path.Join(Escape(p), "@v", Escape(v)+ext)
		src := filepath.Join(cache, filepath.FromSlash(rel))
		var got string
		var err error
		if ext == ".zip" {
			got, err = zipHash(src)
		} else {
			got, err = modHash(src)
		}
		switch {
		case err == nil && got != want:
			return fmt.Errorf("%s%s: %w: %s, the build read %s (%s)", pv, ext, ErrDigest, got, want, src)
		case err == nil:
			out = append(out, File{Rel: rel, Src: src})
		case errors.Is(err, fs.ErrNotExist) && !need:
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%s%s: %w (%s)", pv, ext, ErrMissing, src)
		default:
			return fmt.Errorf("%s%s: %w", pv, ext, err)
		}
		return nil
	}
	for pv, want := range linked {
		gomod := sums[pv+"/go.mod"]
		if gomod == "" {
			return nil, fmt.Errorf("%s/go.mod: no hash in %s", pv, filepath.Join(dir, "go.sum"))
		}
		if err := add(pv, ".mod", gomod, true); err != nil {
			return nil, err
		}
		if err := add(pv, ".zip", want, true); err != nil {
			return nil, err
		}
	}
	for key, want := range sums {
		if pv, ok := strings.CutSuffix(key, "/go.mod"); ok && linked[pv] == "" {
			if err := add(pv, ".mod", want, false); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rel < out[j].Rel })
	return out, nil
}

// Escape is the case encoding of a module path or version in a module
// proxy tree and the module cache: each upper-case letter becomes '!' and
// its lower case, so paths differing in case do not collide on
// case-insensitive file systems.
func Escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
