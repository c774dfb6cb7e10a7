package build

import (
	"archive/zip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

const mitText = `MIT License

Copyright (c) 2026 Example

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.`

// writeProxyModule puts module example.com/dep at version v into a
// file:// module proxy rooted at dir, with an MIT LICENSE.
func writeProxyModule(t *testing.T, dir, v, body string) {
	t.Helper()
	d := filepath.Join(dir, "example.com", "dep", "@v")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/dep\n\ngo 1.21\n"
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(d, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(v+".mod", gomod)
	write(v+".info", `{"Version":"`+v+`","Time":"2026-01-01T00:00:00Z"}`)
	f, err := os.Create(filepath.Join(d, v+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, s := range map[string]string{"go.mod": gomod, "LICENSE": mitText, "dep.go": body} {
		w, err := zw.Create("example.com/dep@" + v + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	write("list", v+"\n")
}

// buildFixture builds a tiny program requiring example.com/dep v1.0.0 and
// replacing it with v1.1.0 (the pattern the Kubernetes wrapper uses for its
// staging modules), offline from a file:// proxy. It returns the binary,
// the module cache and the environment used.
func buildFixture(t *testing.T) (bin, modcache string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy")
	writeProxyModule(t, proxy, "v1.0.0", "package dep\n\nfunc Name() string { return \"old\" }\n")
	writeProxyModule(t, proxy, "v1.1.0", "package dep\n\nfunc Name() string { return \"new\" }\n")
	src := filepath.Join(tmp, "src")
	modcache = filepath.Join(tmp, "modcache")
	files := map[string]string{
		"go.mod":  "module example.com/fixture\n\ngo 1.21\n\nrequire example.com/dep v1.0.0\n\nreplace example.com/dep => example.com/dep v1.1.0\n",
		"main.go": "package main\n\nimport \"example.com/dep\"\n\nfunc main() { println(dep.Name()) }\n",
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin = filepath.Join(tmp, "fixture")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOPROXY=file://"+filepath.ToSlash(proxy), "GOSUMDB=off",
		"GOFLAGS=-mod=mod -modcacherw -buildvcs=false", "GOMODCACHE="+modcache, "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fixture: %v\n%s", err, out)
	}
	return bin, modcache
}

func TestGoBinarySBOM(t *testing.T) {
	bin, modcache := buildFixture(t)
	bi, err := ReadGoBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	bom, unknown, err := GoBinarySBOM(bi, "fixture", strings.Repeat("ab", 32), modcache)
	if err != nil {
		t.Fatal(err)
	}
	if len(unknown) != 0 {
		t.Errorf("unrecognised licenses: %v", unknown)
	}
	comps := *bom.Components
	if len(comps) != 2 || comps[0].Name != "stdlib" || comps[1].Name != "example.com/dep" {
		t.Fatalf("components %+v, want stdlib and example.com/dep", comps)
	}
	dep := comps[1]
	if dep.Version != "v1.1.0" || dep.PackageURL != "pkg:golang/example.com/dep@v1.1.0" {
		t.Errorf("dep linked as %s %s, want the replacement v1.1.0", dep.Version, dep.PackageURL)
	}
	var sum string
	for _, p := range *dep.Properties {
		if p.Name == PropGoSum {
			sum = p.Value
		}
	}
	if !strings.HasPrefix(sum, "h1:") || len(sum) != 47 {
		t.Errorf("go.sum hash %q, want h1:<base64 sha256>", sum)
	}
	if dep.Licenses == nil || (*dep.Licenses)[0].License.ID != "MIT" {
		t.Errorf("dep license %+v, want MIT", dep.Licenses)
	}
	if got := (*bom.Metadata.Component.Hashes)[0].Value; got != strings.Repeat("ab", 32) {
		t.Errorf("subject digest %s", got)
	}

	// The text `go version -m` prints gives the same components.
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseGoVersionM(out)
	if err != nil {
		t.Fatal(err)
	}
	fromText, err := GoComponents(parsed)
	if err != nil {
		t.Fatal(err)
	}
	fromBin, _ := GoComponents(bi)
	if len(fromText) != len(fromBin) {
		t.Fatalf("from text %d components, from binary %d", len(fromText), len(fromBin))
	}
	for i := range fromBin {
		a, b := fromBin[i], fromText[i]
		if a.Name != b.Name || a.Version != b.Version || propsString(a) != propsString(b) {
			t.Errorf("component %d: binary %s %s %s, text %s %s %s", i, a.Name, a.Version, propsString(a), b.Name, b.Version, propsString(b))
		}
	}
}

func propsString(c cdx.Component) string {
	if c.Properties == nil {
		return ""
	}
	var s []string
	for _, p := range *c.Properties {
		s = append(s, p.Name+"="+p.Value)
	}
	return strings.Join(s, ",")
}

func TestGoComponentsRefusesUnhashedModule(t *testing.T) {
	bi, err := ParseGoVersionM([]byte("x: go1.26.0\n\tpath\texample.com/x\n\tmod\texample.com/x\t(devel)\t\n\tdep\texample.com/local\tv0.0.0\t\n\t=>\t../local\t\t\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GoComponents(bi); err == nil || !strings.Contains(err.Error(), "example.com/local") {
		t.Fatalf("a local replacement was accepted (err %v)", err)
	}
}

func TestParseGoVersionMRejects(t *testing.T) {
	for name, in := range map[string]string{
		"no version":  "x: not a go binary\n",
		"two files":   "a: go1.26.0\n\tpath\ta\nb: go1.26.0\n",
		"bad content": "x: go1.26.0\n\tdep\tonly-a-path\n",
	} {
		if _, err := ParseGoVersionM([]byte(in)); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
}

func TestClassifyLicense(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{mitText, "MIT"},
		{"Apache License\n   Version 2.0, January 2004\n http://www.apache.org/licenses/", "Apache-2.0"},
		{"Redistribution and use in source and binary forms, with or without\nmodification... Neither the name of Google Inc. nor", "BSD-3-Clause"},
		{"Redistribution and use in source and binary forms, with or without modification, are permitted", "BSD-2-Clause"},
		{"Mozilla Public License Version 2.0", "MPL-2.0"},
		{"Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted", "ISC"},
		{"All rights reserved.", ""},
		{"Apache License Version 2.0\n" + mitText, "Apache-2.0 MIT"}, // both apply
	} {
		if got := strings.Join(ClassifyLicense([]byte(tc.text)), " "); got != tc.want {
			t.Errorf("ClassifyLicense(%.30q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

// TestAddGoLicenses reads license files as the module cache holds them:
// several files, odd names, a case-encoded path, and none at all.
func TestAddGoLicenses(t *testing.T) {
	cache := t.TempDir()
	files := map[string]string{
		"example.com/!multi@v1.0.0/LICENSE.BSD":     "Redistribution and use in source and binary forms ... Neither the name of X nor",
		"example.com/!multi@v1.0.0/LICENSE.MPL-2.0": "Mozilla Public License Version 2.0",
		"example.com/!multi@v1.0.0/README.md":       mitText, // not a license file
		"example.com/lower@v1.0.0/license.md":       mitText,
		"example.com/none@v1.0.0/go.mod":            "module example.com/none\n",
	}
	for name, text := range files {
		p := filepath.Join(cache, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	comps := []cdx.Component{
		{Name: "example.com/Multi", Version: "v1.0.0"},
		{Name: "example.com/lower", Version: "v1.0.0"},
		{Name: "example.com/none", Version: "v1.0.0"},
	}
	unknown := AddGoLicenses(comps, cache)
	if strings.Join(unknown, " ") != "example.com/none" {
		t.Errorf("unknown = %v, want example.com/none", unknown)
	}
	if l := comps[0].Licenses; l == nil || (*l)[0].Expression != "BSD-3-Clause AND MPL-2.0" {
		t.Errorf("multi: %+v, want BSD-3-Clause AND MPL-2.0", l)
	}
	if l := comps[1].Licenses; l == nil || (*l)[0].License.ID != "MIT" {
		t.Errorf("lower: %+v, want MIT", l)
	}
	if comps[2].Licenses != nil {
		t.Errorf("none: got %+v, want no license", comps[2].Licenses)
	}
}
