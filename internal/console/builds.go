// The builds the console was given: each one's signed manifest read and
// checked as the hub checks it, with its SBOM and provenance summarized.

package console

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/manifest"
)

// maxBuildFile bounds what the console reads of a build's SBOM or
// provenance (a few hundred kilobytes each in practice).
const maxBuildFile = 32 << 20

// Build is one build directory the console was given.
type Build struct {
	Dir      string
	BuildID  string
	Cluster  string
	Revision string
	// Signed: the manifest's signature verified with the artifact key.
	// Without the key the console shows the build unchecked and the hub,
	// which always checks, decides an upgrade.
	Signed     bool
	Roles      []BuildRole
	Provenance Provenance
	// Err says why the build could not be read; nothing else but Dir is set.
	Err string
	// raw and sig are the manifest and its signature as read, what an
	// upgrade hands the hub.
	raw, sig []byte
}

// BuildRole is one role image of a build.
type BuildRole struct {
	Role, RoleID string
	Packages     int
	Prediction   Prediction
	SBOM         SBOMSummary
}

// Prediction is a role image's predicted PCR values (sha256 bank), as the
// hub checks a node's quote against them.
type Prediction struct {
	PCRs  []PCRValue
	PCR11 []PCRValue // PCR 11 at each quotable boot phase
	Err   string
}

// PCRValue is one predicted value: a PCR (Name is its phase for PCR 11).
type PCRValue struct {
	Index  int
	Name   string
	Value  string
	Events int
}

// SBOMSummary counts a role's SBOM components and their licenses.
type SBOMSummary struct {
	Components int
	Licenses   []LicenseCount // most used first
	// Unlicensed counts components that name no license.
	Unlicensed int
	Err        string
}

// LicenseCount is how many components name a license (an SPDX id, a name
// or an expression).
type LicenseCount struct {
	License string
	Count   int
}

// Provenance is the build's SLSA provenance, summarized.
type Provenance struct {
	PredicateType, BuildType string
	Builder, Invocation      string
	Subjects, Dependencies   int
	Err                      string
}

// LoadBuild reads the build in dir: its manifest checked with pub (nil:
// not checked, said on the page), each role's PCR prediction and SBOM and
// the provenance, each file checked against the manifest's digest first.
func LoadBuild(dir string, pub ed25519.PublicKey) Build {
	b := Build{Dir: dir}
	var m *manifest.Manifest
	var err error
	if pub != nil {
		m, b.raw, b.sig, err = cluster.VerifiedBuild(dir, pub)
		b.Signed = err == nil
	} else {
		m, b.raw, err = manifest.Read(filepath.Join(dir, manifest.ManifestFile))
		if err == nil {
			b.sig, err = os.ReadFile(filepath.Join(dir, manifest.SignatureFile))
		}
	}
	if err != nil {
		b.Err = clip(err.Error(), maxAuditField)
		return b
	}
	b.BuildID, b.Cluster, b.Revision = m.BuildID, m.Cluster, m.Source.Revision
	names := make([]string, 0, len(m.Roles))
	for r := range m.Roles {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		img := m.Roles[r]
		b.Roles = append(b.Roles, BuildRole{Role: r, RoleID: img.RoleID, Packages: img.Packages,
			Prediction: predictionOf(img), SBOM: sbomOf(dir, m, manifest.RoleFile(r, build.FileSBOM))})
	}
	b.Provenance = provenanceOf(dir, m)
	return b
}

// Image finds the role image roleID (what a node reports as its build).
func (b *Build) Image(roleID string) (BuildRole, bool) {
	for _, r := range b.Roles {
		if r.RoleID == roleID {
			return r, true
		}
	}
	return BuildRole{}, false
}

// Role finds the build's image of a role.
func (b *Build) Role(role string) (BuildRole, bool) {
	for _, r := range b.Roles {
		if r.Role == role {
			return r, true
		}
	}
	return BuildRole{}, false
}

func predictionOf(img manifest.RoleManifest) Prediction {
	p, err := build.PredictedPCRs(img)
	if err != nil {
		return Prediction{Err: clip(err.Error(), maxAuditField)}
	}
	var out Prediction
	for _, c := range p.PCRs {
		out.PCRs = append(out.PCRs, PCRValue{Index: c.Index, Value: c.Value.String(), Events: len(c.Events)})
	}
	for _, ph := range p.PCR11Phases {
		out.PCR11 = append(out.PCR11, PCRValue{Index: 11, Name: ph.Name, Value: ph.Value.String()})
	}
	return out
}

// readListed reads a build file the signed manifest lists, bounded, and
// checks its digest: what the page says is what was signed.
func readListed(dir string, m *manifest.Manifest, rel string) ([]byte, error) {
	fe, ok := m.File(rel)
	if !ok {
		return nil, fmt.Errorf("%s: not in the manifest of build %s", rel, m.BuildID)
	}
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := boundedio.ReadAll(f, maxBuildFile, rel)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != fe.SHA256 {
		return nil, fmt.Errorf("%s: sha256 %x, the manifest lists %s", rel, sum, fe.SHA256)
	}
	return raw, nil
}

func sbomOf(dir string, m *manifest.Manifest, rel string) SBOMSummary {
	raw, err := readListed(dir, m, rel)
	if err != nil {
		return SBOMSummary{Err: clip(err.Error(), maxAuditField)}
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(raw), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return SBOMSummary{Err: clip(fmt.Sprintf("%s: %v", rel, err), maxAuditField)}
	}
	var s SBOMSummary
	count := map[string]int{}
	if bom.Components != nil {
		for _, c := range *bom.Components {
			s.Components++
			named := false
			if c.Licenses != nil {
				for _, l := range *c.Licenses {
					name := l.Expression
					if l.License != nil {
						name = l.License.ID
						if name == "" {
							name = l.License.Name
						}
					}
					if name != "" {
						count[clip(name, 200)]++
						named = true
					}
				}
			}
			if !named {
				s.Unlicensed++
			}
		}
	}
	for l, n := range count {
		s.Licenses = append(s.Licenses, LicenseCount{License: l, Count: n})
	}
	sort.Slice(s.Licenses, func(i, j int) bool {
		if s.Licenses[i].Count != s.Licenses[j].Count {
			return s.Licenses[i].Count > s.Licenses[j].Count
		}
		return s.Licenses[i].License < s.Licenses[j].License
	})
	return s
}

func provenanceOf(dir string, m *manifest.Manifest) Provenance {
	raw, err := readListed(dir, m, manifest.ProvenanceRel)
	if err != nil {
		return Provenance{Err: clip(err.Error(), maxAuditField)}
	}
	// The in-toto statement kubedos build writes (SLSA provenance v1).
	var st struct {
		Subject       []json.RawMessage `json:"subject"`
		PredicateType string            `json:"predicateType"`
		Predicate     struct {
			BuildDefinition struct {
				BuildType            string            `json:"buildType"`
				ResolvedDependencies []json.RawMessage `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder  map[string]string `json:"builder"`
				Metadata map[string]string `json:"metadata"`
			} `json:"runDetails"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return Provenance{Err: clip(fmt.Sprintf("%s: %v", manifest.ProvenanceRel, err), maxAuditField)}
	}
	p := st.Predicate
	return Provenance{PredicateType: clip(st.PredicateType, 200), BuildType: clip(p.BuildDefinition.BuildType, 200),
		Builder: clip(p.RunDetails.Builder["id"], 200), Invocation: clip(p.RunDetails.Metadata["invocationId"], 200),
		Subjects: len(st.Subject), Dependencies: len(p.BuildDefinition.ResolvedDependencies)}
}

// BuildsView is the builds page's data.
type BuildsView struct {
	Builds []BuildInService
	// Unknown are the builds nodes report that the console was not given.
	Unknown []BuildCount
}

// BuildCount is how many enrolled nodes report a build.
type BuildCount struct {
	Build string
	Nodes int
}

// BuildInService is a build with the nodes that run it or are to.
type BuildInService struct {
	*Build
	Running, Targeted int
}

func (c *Console) buildsPage(w http.ResponseWriter, r *http.Request) {
	res, err := op(r).Hub.ListNodes(r.Context())
	if err != nil {
		c.hubError(w, r, err)
		return
	}
	c.render(w, "builds", c.base(r, "Builds"), c.buildsView(res.Nodes))
}

func (c *Console) buildsView(nodes []api.Node) BuildsView {
	running, targeted := map[string]int{}, map[string]int{}
	for _, n := range nodes {
		if n.BuildID != "" && n.State == api.NodeEnrolled {
			running[n.BuildID]++
		}
		if n.Target != "" {
			targeted[n.Target]++
		}
	}
	known := map[string]bool{}
	var v BuildsView
	for i := range c.builds {
		b := BuildInService{Build: &c.builds[i]}
		for _, r := range b.Roles {
			known[r.RoleID] = true
			b.Running += running[r.RoleID]
			b.Targeted += targeted[r.RoleID]
		}
		v.Builds = append(v.Builds, b)
	}
	// In service first.
	sort.SliceStable(v.Builds, func(i, j int) bool { return v.Builds[i].Running > v.Builds[j].Running })
	for id, n := range running {
		if !known[id] {
			v.Unknown = append(v.Unknown, BuildCount{Build: clip(id, 200), Nodes: n})
		}
	}
	sort.Slice(v.Unknown, func(i, j int) bool { return v.Unknown[i].Build < v.Unknown[j].Build })
	return v
}

// imageOf finds the build whose role image a node reports.
func (c *Console) imageOf(roleID string) (*Build, BuildRole, bool) {
	for i := range c.builds {
		if img, ok := c.builds[i].Image(roleID); ok {
			return &c.builds[i], img, true
		}
	}
	return nil, BuildRole{}, false
}

// buildByID finds a build the console was given and could read.
func (c *Console) buildByID(id string) (*Build, bool) {
	for i := range c.builds {
		if c.builds[i].Err == "" && c.builds[i].BuildID == id {
			return &c.builds[i], true
		}
	}
	return nil, false
}
