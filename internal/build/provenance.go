package build

import (
	"encoding/json"
	"sort"

	"github.com/kubedos/kubedos/internal/manifest"
)

// The in-toto Statement v1 and SLSA Provenance v1 shapes, written as plain
// structs: the JSON is small and fixed, and no timestamps go in, so the same
// inputs give the same provenance.
type statement struct {
	Type          string     `json:"_type"`
	Subject       []subject  `json:"subject"`
	PredicateType string     `json:"predicateType"`
	Predicate     provenance `json:"predicate"`
}

type subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

type provenance struct {
	BuildDefinition buildDefinition `json:"buildDefinition"`
	RunDetails      runDetails      `json:"runDetails"`
}

type buildDefinition struct {
	BuildType            string         `json:"buildType"`
	ExternalParameters   map[string]any `json:"externalParameters"`
	InternalParameters   map[string]any `json:"internalParameters"`
	ResolvedDependencies []resource     `json:"resolvedDependencies"`
}

type resource struct {
	Name   string            `json:"name,omitempty"`
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest"`
}

type runDetails struct {
	Builder  map[string]string `json:"builder"`
	Metadata map[string]string `json:"metadata"`
}

// BuildType identifies how kubedos builds, for SLSA verifiers.
const BuildType = "https://kubedos.io/build/v1"

// provenanceFor describes m's outputs as subjects and its inputs (spec,
// lock, every package, the kubedos source and binaries, the Kubernetes
// binaries some roles carry, tools) as the build definition.
func provenanceFor(m *manifest.Manifest, binaries, packages []resource) ([]byte, error) {
	var subjects []subject
	for _, f := range m.Files {
		subjects = append(subjects, subject{Name: f.Path, Digest: map[string]string{"sha256": f.SHA256}})
	}
	deps := []resource{
		{Name: manifest.SpecFile, Digest: digestMap(m.SpecDigest)},
		{Name: manifest.LockFile, Digest: digestMap(m.LockDigest)},
		{Name: "kubedosd", Digest: map[string]string{"sha256": m.Source.KubedosdSHA256}},
		{Name: "kubedos-init", Digest: map[string]string{"sha256": m.Source.InitSHA256}},
	}
	deps = append(deps, binaries...)
	if m.Source.Revision != "" {
		deps = append(deps, resource{URI: "git+kubedos", Digest: map[string]string{"gitCommit": m.Source.Revision}})
	}
	sort.Slice(packages, func(i, j int) bool { return packages[i].URI < packages[j].URI })
	deps = append(deps, packages...)
	st := statement{
		Type:          "https://in-toto.io/Statement/v1",
		Subject:       subjects,
		PredicateType: "https://slsa.dev/provenance/v1",
		Predicate: provenance{
			BuildDefinition: buildDefinition{
				BuildType:            BuildType,
				ExternalParameters:   map[string]any{"cluster": m.Cluster, "spec": manifest.SpecFile, "lock": manifest.LockFile},
				InternalParameters:   map[string]any{"tools": m.Tools, "sourceDateEpoch": m.Epoch},
				ResolvedDependencies: deps,
			},
			RunDetails: runDetails{
				Builder:  map[string]string{"id": "https://kubedos.io/builder/local"},
				Metadata: map[string]string{"invocationId": m.BuildID},
			},
		},
	}
	return json.MarshalIndent(st, "", "  ")
}

// digestMap turns "sha256:<hex>" into {"sha256": "<hex>"}.
func digestMap(d string) map[string]string {
	if len(d) > 7 && d[:7] == "sha256:" {
		return map[string]string{"sha256": d[7:]}
	}
	return map[string]string{"sha256": d}
}
