package build

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// ManifestFile and SignatureFile are the names of the signed description of
// a build, at the top of its directory.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	SpecFile      = "inputs/cluster.yaml"
	LockFile      = "inputs/kubedos.lock"
	ProvenanceRel = "provenance.intoto.json"
)

// Manifest describes a build: every output with its digest, the inputs it
// was made from, and per role the predicted TPM policy. It is signed with
// the artifact key (manifest.sig) and is what the hub trusts.
type Manifest struct {
	APIVersion string                  `json:"apiVersion"`
	Kind       string                  `json:"kind"`
	Cluster    string                  `json:"cluster"`
	BuildID    string                  `json:"buildID"`
	SpecDigest string                  `json:"specDigest"`
	LockDigest string                  `json:"lockDigest"`
	Source     Source                  `json:"source"`
	Tools      map[string]string       `json:"tools"`
	Epoch      int64                   `json:"sourceDateEpoch"`
	DBCert     string                  `json:"dbCertificateSHA256"`
	Roles      map[string]RoleManifest `json:"roles"`
	Files      []FileEntry             `json:"files"`
}

// Source identifies the kubedos code that made the build.
type Source struct {
	Revision       string `json:"revision"`
	KubedosdSHA256 string `json:"kubedosdSHA256"`
	InitSHA256     string `json:"kubedosInitSHA256"`
}

// RoleManifest is one role's image.
type RoleManifest struct {
	RoleID     string          `json:"roleID"`
	Kernel     string          `json:"kernel"`
	Cmdline    string          `json:"cmdline"`
	RootHash   string          `json:"rootHash"`
	Salt       string          `json:"salt"`
	DataBlocks uint64          `json:"dataBlocks"`
	UKIPath    string          `json:"ukiPath"` // on the ESP
	Packages   int             `json:"packages"`
	Partitions []DiskPartition `json:"partitions"`
	// PCRs is the predicted TPM policy (sha256 bank), filled by internal/measure.
	PCRs json.RawMessage `json:"pcrs,omitempty"`
}

// FileEntry is one output file, path relative to the build directory.
type FileEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ReadManifest reads a build's manifest strictly.
func ReadManifest(path string) (*Manifest, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &m, raw, nil
}
