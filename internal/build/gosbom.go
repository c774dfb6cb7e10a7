package build

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/kubedos/kubedos/internal/modproxy"
)

// PropGoSum names the component property carrying a module's go.sum hash
// ("h1:…", a SHA-256 over the module's file tree, not over one file, so it
// is not given as a CycloneDX hash).
const PropGoSum = "kubedos:go.sum"

// ReadGoBinary reads the build information a Go binary carries: what
// `go version -m FILE` prints.
func ReadGoBinary(path string) (*debug.BuildInfo, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("go binary %s: %w", path, err)
	}
	return bi, nil
}

// ParseGoVersionM parses the text `go version -m FILE` prints for one file,
// for when only that text was kept (the Kubernetes build cache stores it).
func ParseGoVersionM(text []byte) (*debug.BuildInfo, error) {
	first, rest, _ := bytes.Cut(text, []byte("\n"))
	_, gover, ok := strings.Cut(string(first), ": ")
	if !ok || !strings.HasPrefix(gover, "go") {
		return nil, fmt.Errorf("go version -m: first line %q is not \"FILE: goVERSION\"", bound(string(first)))
	}
	// The rest is BuildInfo.String() indented by one tab.
	var b strings.Builder
	for _, line := range strings.Split(string(rest), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "\t") {
			return nil, fmt.Errorf("go version -m: line %q: more than one file in the text", bound(line))
		}
		b.WriteString(line[1:])
		b.WriteByte('\n')
	}
	bi, err := debug.ParseBuildInfo(b.String())
	if err != nil {
		return nil, fmt.Errorf("go version -m: %w", err)
	}
	bi.GoVersion = gover // the first line's; ParseBuildInfo leaves it unset
	return bi, nil
}

func bound(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// GoComponents lists what a Go binary links as CycloneDX components: the
// standard library of its toolchain and every module, at the version
// linked (a replacement's, where go.mod replaces one), with its go.sum hash.
// A module without a hash is an error: it was not verified against a go.sum
// (a local replacement), and nothing unpinned ships.
func GoComponents(bi *debug.BuildInfo) ([]cdx.Component, error) {
	std := strings.TrimPrefix(bi.GoVersion, "go")
	comps := []cdx.Component{{
		BOMRef: "pkg:golang/stdlib@v" + std, Type: cdx.ComponentTypeLibrary,
		Name: "stdlib", Version: bi.GoVersion, PackageURL: "pkg:golang/stdlib@v" + std,
	}}
	var bad []string
	for _, m := range bi.Deps {
		path, ver, sum := m.Path, m.Version, m.Sum
		var props []cdx.Property
		if r := m.Replace; r != nil {
			ver, sum = r.Version, r.Sum
			if r.Path != m.Path {
				props = append(props, cdx.Property{Name: "kubedos:go.replaced-by", Value: r.Path})
				path = r.Path
			}
		}
		if sum == "" || ver == "" {
			bad = append(bad, m.Path)
			continue
		}
		props = append(props, cdx.Property{Name: PropGoSum, Value: sum})
		purl := GoPURL(path, ver)
		comps = append(comps, cdx.Component{
			BOMRef: purl, Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: ver,
			PackageURL: purl, Properties: &props,
		})
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("modules without a go.sum hash (local replacements?): %s", strings.Join(bad, ", "))
	}
	sort.Slice(comps[1:], func(i, j int) bool { return comps[1+i].Name < comps[1+j].Name })
	return comps, nil
}

// GoPURL is the package URL of a Go module version.
func GoPURL(path, version string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "pkg:golang/" + strings.Join(segs, "/") + "@" + url.PathEscape(version)
}

// AddGoLicenses sets each module component's license from the license
// files at the top of its copy in the module cache modcache (GOMODCACHE),
// classified by the wording every copy of the common licenses shares.
// Where they name several licenses (code under each, or a notice for
// vendored code) the component gets "A AND B": all of them apply. A module
// whose license is missing or not recognised is returned by path, for a
// person to read; its component carries no license rather than a guess.
func AddGoLicenses(comps []cdx.Component, modcache string) (unknown []string) {
	for i := range comps {
		c := &comps[i]
		if c.Name == "stdlib" {
			c.Licenses = &cdx.Licenses{{License: &cdx.License{ID: "BSD-3-Clause"}}}
			continue
		}
		path := c.Name
		if c.Properties != nil {
			for _, p := range *c.Properties {
				if p.Name == "kubedos:go.replaced-by" {
					path = p.Value
				}
			}
		}
		ids := moduleLicenses(filepath.Join(modcache, modproxy.Escape(path)+"@"+modproxy.Escape(c.Version)))
		switch len(ids) {
		case 0:
			unknown = append(unknown, c.Name)
		case 1:
			c.Licenses = &cdx.Licenses{{License: &cdx.License{ID: ids[0]}}}
		default:
			c.Licenses = &cdx.Licenses{{Expression: strings.Join(ids, " AND ")}}
		}
	}
	return unknown
}

// moduleLicenses is the sorted union of the licenses named by the files
// LICENSE*, LICENCE* and COPYING* at the top of a module directory.
func moduleLicenses(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, e := range entries {
		n := strings.ToLower(e.Name())
		if !e.Type().IsRegular() || !(strings.HasPrefix(n, "license") || strings.HasPrefix(n, "licence") || strings.HasPrefix(n, "copying")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, id := range ClassifyLicense(b) {
			seen[id] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// ClassifyLicense names the licenses a text contains by SPDX identifier,
// from phrases each license's text has. It is a triage, not a legal
// reading: a text it finds nothing in is for a person to read.
func ClassifyLicense(text []byte) []string {
	t := strings.Join(strings.Fields(strings.ToLower(string(text))), " ")
	has := func(phrases ...string) bool {
		for _, p := range phrases {
			if !strings.Contains(t, p) {
				return false
			}
		}
		return true
	}
	var ids []string
	if has("apache license", "version 2.0") {
		ids = append(ids, "Apache-2.0")
	}
	if has("mozilla public license", "version 2.0") {
		ids = append(ids, "MPL-2.0")
	}
	if has("permission is hereby granted, free of charge") {
		ids = append(ids, "MIT")
	}
	if has("permission to use, copy, modify, and") && has("distribute this software for any purpose with or without fee is hereby granted") {
		ids = append(ids, "ISC")
	}
	if has("redistribution and use in source and binary forms") {
		if has("neither the name") || has("names of its contributors may") || has("name of the copyright holder nor") {
			ids = append(ids, "BSD-3-Clause")
		} else {
			ids = append(ids, "BSD-2-Clause")
		}
	}
	return ids
}

// GoBinarySBOM describes one Go binary: itself (name and sha256 digest) as
// the BOM's subject, and what it links as components, with licenses where
// modcache is set. Unrecognised licenses are returned, not guessed. The
// caller sets the subject's version: a binary does not know its release.
func GoBinarySBOM(bi *debug.BuildInfo, name, sha256hex, modcache string) (*cdx.BOM, []string, error) {
	comps, err := GoComponents(bi)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var unknown []string
	if modcache != "" {
		unknown = AddGoLicenses(comps, modcache)
	}
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + DerivedUUID("go-sbom", name, sha256hex)
	bom.Metadata = &cdx.Metadata{
		Component: &cdx.Component{
			Type: cdx.ComponentTypeApplication, Name: name,
			Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: sha256hex}},
			Properties: &[]cdx.Property{{Name: "kubedos:go.main", Value: bi.Main.Path}},
		},
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: "kubedos"}}},
	}
	bom.Components = &comps
	return bom, unknown, nil
}
