// Package modproxy collects what a Go main module needs to be built with
// no network: the files of a Go module proxy (GOPROXY=file://DIR) holding
// the go.mod of every module version its module graph reaches and the
// source zip of every module its binary links. The recovery bundle carries
// them for the Kubernetes wrapper module (kube/), so the kube binary can be
// rebuilt offline from the bundle; go.sum then checks every byte.
package modproxy

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
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

// Files lists the proxy files that build the main module in dir offline:
// the .mod (and .info, when cached) of every module version whose go.mod
// the go command reads (`go mod graph`, the main go.mod's requirements), and the .zip of
// every module binary links (its build info, replacements resolved). It reads the module cache of `go env GOMODCACHE`
// and never downloads (GOPROXY=off). Sorted by Rel.
func Files(ctx context.Context, dir, binary string) ([]File, error) {
	env := append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOWORK=off")
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = dir, env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	raw, err := run("env", "GOMODCACHE")
	if err != nil {
		return nil, err
	}
	cache := filepath.Join(strings.TrimSpace(string(raw)), "cache", "download")
	graph, err := run("mod", "graph")
	if err != nil {
		return nil, err
	}
	// The go command read the go.mod of each module version that has
	// requirements in the graph (the left column) and of each selected
	// one; a version only required (the right column) may have been
	// pruned unread, so its go.mod goes in when cached.
	mods := map[string]bool{} // path@version → its go.mod is needed
	isMod := func(f string) bool {
		return strings.Contains(f, "@") && !strings.HasPrefix(f, "go@") && !strings.HasPrefix(f, "toolchain@")
	}
	for _, line := range strings.Split(string(graph), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			if isMod(f[0]) {
				mods[f[0]] = true
			}
			if isMod(f[1]) && !mods[f[1]] {
				mods[f[1]] = false
			}
		}
	}
	// The main module's requirements (replacements applied): with graph
	// pruning they name every module its packages build from.
	raw, err = run("mod", "edit", "-json")
	if err != nil {
		return nil, err
	}
	var gomod struct {
		Require []struct{ Path, Version string }
		Replace []struct {
			Old struct{ Path, Version string }
			New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(raw, &gomod); err != nil {
		return nil, fmt.Errorf("go mod edit -json in %s: %w", dir, err)
	}
	for _, r := range gomod.Require {
		pv := r.Path + "@" + r.Version
		for _, rep := range gomod.Replace {
			if rep.Old.Path == r.Path && (rep.Old.Version == "" || rep.Old.Version == r.Version) {
				pv = rep.New.Path + "@" + rep.New.Version
			}
		}
		if !strings.HasSuffix(pv, "@") {
			mods[pv] = true
		}
	}
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binary, err)
	}
	zips := map[string]bool{}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		if d.Version == "" || d.Version == "(devel)" {
			continue // a directory replacement: its source is the main module's
		}
		zips[d.Path+"@"+d.Version], mods[d.Path+"@"+d.Version] = true, true
	}
	var out []File
	add := func(pv, ext string, need bool) error {
		p, v, _ := strings.Cut(pv, "@")
		rel := path.Join(Escape(p), "@v", Escape(v)+ext)
		src := filepath.Join(cache, filepath.FromSlash(rel))
		switch _, err := os.Stat(src); {
		case err == nil:
			out = append(out, File{Rel: rel, Src: src})
		case errors.Is(err, fs.ErrNotExist) && !need:
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%s%s: %w (%s)", pv, ext, ErrMissing, src)
		default:
			return err
		}
		return nil
	}
	for pv, need := range mods {
		if err := add(pv, ".mod", need); err != nil {
			return nil, err
		}
		if err := add(pv, ".info", false); err != nil {
			return nil, err
		}
		if zips[pv] {
			if err := add(pv, ".zip", true); err != nil {
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
