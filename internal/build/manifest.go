package build

import "github.com/kubedos/kubedos/internal/manifest"

// The manifest types live in internal/manifest, which kubedosd also reads.
const (
	ManifestFile  = manifest.ManifestFile
	SignatureFile = manifest.SignatureFile
	SpecFile      = manifest.SpecFile
	LockFile      = manifest.LockFile
	ProvenanceRel = manifest.ProvenanceRel
)

type (
	Manifest      = manifest.Manifest
	Source        = manifest.Source
	RoleManifest  = manifest.RoleManifest
	FileEntry     = manifest.FileEntry
	DiskPartition = manifest.Partition
)

// ReadManifest reads a build's manifest strictly.
func ReadManifest(path string) (*Manifest, []byte, error) { return manifest.Read(path) }
