// Package manifest is the signed description of a build: what the build
// writes, what the hub trusts, and what a node checks before it accepts an
// upgrade. It imports nothing of ours, so kubedosd can read a manifest
// without carrying the build machinery.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// File names at the top of a build directory.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	SpecFile      = "inputs/cluster.yaml"
	LockFile      = "inputs/kubedos.lock"
	ProvenanceRel = "provenance.intoto.json"
)

// Per-role file names inside roles/<role>/ of a build directory.
const (
	FileRoot   = "root.squashfs"
	FileVerity = "root.verity"
	FileUKI    = "kubedos.efi"
)

// ProxmoxMachine is the QEMU machine version the Proxmox VE target pins:
// an unpinned q35 follows the host's QEMU, so a Proxmox VE upgrade would
// change the hardware under a measured boot. 9.2 is Proxmox VE 8.4's QEMU.
const ProxmoxMachine = "pc-q35-9.2"

// Manifest describes a build: every output with its digest, the inputs it
// was made from, and per role the predicted TPM policy. It is signed with
// the artifact key (manifest.sig) and is what the hub trusts.
type Manifest struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Cluster    string            `json:"cluster"`
	BuildID    string            `json:"buildID"`
	SpecDigest string            `json:"specDigest"`
	LockDigest string            `json:"lockDigest"`
	Source     Source            `json:"source"`
	Tools      map[string]string `json:"tools"`
	Epoch      int64             `json:"sourceDateEpoch"`
	DBCert     string            `json:"dbCertificateSHA256"`
	// PCRPolicyKey is the fingerprint (tpmseal.Fingerprint) of the key
	// that signed each UKI's PCR 11 policies (its .pcrsig section).
	PCRPolicyKey string                  `json:"pcrPolicyKeySHA256,omitempty"`
	Roles        map[string]RoleManifest `json:"roles"`
	Files        []FileEntry             `json:"files"`
	// Machines is, per VM target, the machine version the target pins
	// for this build's nodes ("proxmox": ProxmoxMachine): the hardware
	// the firmware runs on, an input of the prediction besides the
	// artifacts. Builds made before it was recorded lack it.
	Machines map[string]string `json:"machines,omitempty"`
}

// Source identifies the kubedos code that made the build.
type Source struct {
	Revision       string `json:"revision"`
	KubedosdSHA256 string `json:"kubedosdSHA256"`
	InitSHA256     string `json:"kubedosInitSHA256"`
}

// RoleManifest is one role's image.
type RoleManifest struct {
	RoleID     string      `json:"roleID"`
	Kernel     string      `json:"kernel"`
	Cmdline    string      `json:"cmdline"`
	RootHash   string      `json:"rootHash"`
	Salt       string      `json:"salt"`
	DataBlocks uint64      `json:"dataBlocks"`
	UKIPath    string      `json:"ukiPath"` // on the ESP
	Packages   int         `json:"packages"`
	Partitions []Partition `json:"partitions"`
	// PCRs is the predicted TPM policy (sha256 bank), filled by internal/measure.
	PCRs json.RawMessage `json:"pcrs,omitempty"`
}

// Partition is one partition of a role's disk image; Content (a file) is
// written at its start, the rest stays zero (sparse).
type Partition struct {
	Label   string `json:"Label"`
	Type    string `json:"Type"`
	UUID    string `json:"UUID"`
	SizeMiB int64  `json:"SizeMiB"`
	Content string `json:"Content"`
}

// FileEntry is one output file, path relative to the build directory.
type FileEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Parse decodes a manifest strictly: an unknown field is an error, so a
// manifest from a newer format is not half understood.
func Parse(raw []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m.Kind != "BuildManifest" || m.BuildID == "" {
		return nil, fmt.Errorf("not a build manifest (kind %q, buildID %q)", m.Kind, m.BuildID)
	}
	return &m, nil
}

// Read reads and parses a build's manifest file.
func Read(path string) (*Manifest, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, raw, nil
}

// File finds an output file by its path in the build directory.
func (m *Manifest) File(path string) (FileEntry, bool) {
	for _, f := range m.Files {
		if f.Path == path {
			return f, true
		}
	}
	return FileEntry{}, false
}

// RoleFile is the path of one of a role's files in the build directory.
func RoleFile(role, name string) string { return "roles/" + role + "/" + name }

// HasRootHash says whether a kernel command line names this root hash; a
// UKI's cmdline is how a node tells which build a boot entry starts.
func HasRootHash(cmdline, rootHash string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == "kubedos.roothash="+rootHash {
			return true
		}
	}
	return false
}

// FileDigest is the sha256 (hex) and size of a file, as a FileEntry lists.
func FileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
