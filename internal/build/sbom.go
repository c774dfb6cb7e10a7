package build

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/spec"
)

// Installed is one package dpkg reports installed in a root.
type Installed struct{ Name, Version, Architecture string }

// InstalledPackages reads a root's dpkg status database.
func InstalledPackages(rootfs string) ([]Installed, error) {
	path := filepath.Join(rootfs, "var/lib/dpkg/status")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dpkg status: %w", err)
	}
	var out []Installed
	var cur Installed
	var status string
	flush := func() {
		if cur.Name != "" && strings.HasSuffix(status, " installed") {
			out = append(out, cur)
		}
		cur, status = Installed{}, ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		switch k {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Architecture = v
		case "Status":
			status = v
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// onlyLocked checks that everything installed in a role's root is in the
// role's locked set: the role's content address covers those packages and
// no others, so a root holding another (a choice the base's resolution
// made that the role's own would not) must not be stored under it.
func onlyLocked(installed []Installed, locked []string, role spec.Role) error {
	var extra []string
	for _, in := range installed {
		if !slices.Contains(locked, in.Name) {
			extra = append(extra, in.Name+" "+in.Version)
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("role %s: installed but not in the role's locked packages: %s", role, strings.Join(extra, ", "))
	}
	return nil
}

// PURL is the package URL of a Debian package.
func PURL(p lock.Package, suite string) string {
	q := url.Values{"arch": {p.Architecture}, "distro": {"debian-" + suite}}
	return fmt.Sprintf("pkg:deb/debian/%s@%s?%s", p.Name, url.PathEscape(p.Version), q.Encode())
}

// MakeSBOM describes every package installed in a role's root as CycloneDX,
// with the .deb's sha256 from the lock. A package installed but not locked
// (or locked at another version) is an error: nothing unpinned ships.
func MakeSBOM(installed []Installed, l *lock.Lock, role, roleID string) (*cdx.BOM, error) {
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + DerivedUUID("sbom", roleID)
	bom.Metadata = &cdx.Metadata{
		Component: &cdx.Component{Type: cdx.ComponentTypeOS, Name: "kubedos-" + role, Version: roleID},
		Tools:     &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: "kubedos"}}},
	}
	var comps []cdx.Component
	var bad []string
	for _, in := range installed {
		p, ok := l.Package(in.Name)
		if !ok || p.Version != in.Version {
			bad = append(bad, fmt.Sprintf("%s %s", in.Name, in.Version))
			continue
		}
		comps = append(comps, cdx.Component{
			BOMRef: PURL(p, l.Suite), Type: cdx.ComponentTypeLibrary, Name: p.Name, Version: p.Version,
			PackageURL: PURL(p, l.Suite),
			Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: p.SHA256}},
		})
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("role %s: installed but not in the lock: %s", role, strings.Join(bad, ", "))
	}
	bom.Components = &comps
	return bom, nil
}

// WriteSBOM writes bom as CycloneDX JSON.
func WriteSBOM(bom *cdx.BOM, path string) error {
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.Encode(bom); err != nil {
		return fmt.Errorf("encode SBOM: %w", err)
	}
	return durable.WriteFile(path, buf.Bytes(), 0o644)
}

// ReadSBOM reads a CycloneDX JSON SBOM.
func ReadSBOM(path string) (*cdx.BOM, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(f, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, fmt.Errorf("SBOM %s: %w", path, err)
	}
	return &bom, nil
}
