// Package bundle writes and reads the recovery bundle: one tar file holding
// what it takes to rebuild a cluster's images with no network — the spec and
// lock, the signed darksite repository, the public halves of the keys, the
// node binaries the build was made with, and the build's signed records
// (manifest, provenance, SBOMs; the images too when asked). Private keys
// never enter it.
//
// The first member is bundle.json, an index of every other member with its
// size and sha256; the second is bundle.sig, the index signed with the
// artifact key. A reader checks the signature against a key it already
// trusts (never one from the bundle), then every member against the index,
// so one pass over the file proves all of it.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// Member names and directories inside a bundle.
const (
	IndexName = "bundle.json"
	SigName   = "bundle.sig"

	DirInputs = "inputs"   // cluster.yaml and kubedos.lock
	DirKeys   = "keys"     // public halves, the layout of kubedos keys init
	DirRepo   = "darksite" // the signed APT repository the build installed from
	DirBin    = "bin"      // kubedosd and kubedos-init, as in the manifest
	DirBuild  = "build"    // build/<build-id>/: the build's records (and images)

	APIVersion = "kubedos.io/v1alpha1"
	Kind       = "RecoveryBundle"

	// MaxIndexBytes bounds the index a reader accepts before checking its
	// signature: a darksite repo of a few thousand packages is far below.
	MaxIndexBytes = 16 << 20
	maxSigBytes   = 4 << 10
)

// Index lists every member of a bundle after the index and its signature.
type Index struct {
	APIVersion string               `json:"apiVersion"`
	Kind       string               `json:"kind"`
	Cluster    string               `json:"cluster"`
	BuildID    string               `json:"buildID"`
	Epoch      int64                `json:"sourceDateEpoch"`
	Images     bool                 `json:"images"` // the build's boot images are included
	SigningKey string               `json:"signingKey"`
	Files      []manifest.FileEntry `json:"files"` // sorted by path
	// Acceptance is the build's sealed acceptance record when the bundle
	// carries one (build/<id>/acceptance.json), checked by Verify and
	// Extract against the trusted key; never part of the index itself.
	Acceptance *manifest.Acceptance `json:"-"`
}

// checkAcceptance checks a sealed acceptance record: signed by pub, of
// cluster and build.
func checkAcceptance(pub ed25519.PublicKey, raw, sig []byte, cluster, buildID string) (*manifest.Acceptance, error) {
	if err := sign.VerifyBlob(pub, raw, sig); err != nil {
		return nil, fmt.Errorf("acceptance record signature (%s): %w", manifest.AcceptanceSigFile, err)
	}
	a, err := manifest.ParseAcceptance(raw)
	if err != nil {
		return nil, err
	}
	if a.Cluster != cluster || a.BuildID != buildID {
		return nil, fmt.Errorf("acceptance record of cluster %s build %s, not of this build (%s %s)", a.Cluster, a.BuildID, cluster, buildID)
	}
	return a, nil
}

// Size is the sum of the members' sizes.
func (x *Index) Size() int64 {
	var n int64
	for _, f := range x.Files {
		n += f.Size
	}
	return n
}

// parseIndex decodes an index strictly and checks every entry's shape:
// paths are clean, relative, unique and below a known directory; digests
// are sha256 hex. Errors name the field.
func parseIndex(raw []byte) (*Index, error) {
	var x Index
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("%s: %w", IndexName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the index", IndexName)
	}
	switch {
	case x.APIVersion != APIVersion:
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", IndexName, x.APIVersion, APIVersion)
	case x.Kind != Kind:
		return nil, fmt.Errorf("%s: kind %q, want %q", IndexName, x.Kind, Kind)
	case x.BuildID == "" || strings.ContainsAny(x.BuildID, "/\\") || x.BuildID == "." || x.BuildID == "..":
		return nil, fmt.Errorf("%s: buildID %q is not a build id", IndexName, x.BuildID)
	case len(x.Files) == 0:
		return nil, fmt.Errorf("%s: files: empty", IndexName)
	}
	seen := make(map[string]bool, len(x.Files))
	for i, f := range x.Files {
		if err := checkMemberPath(f.Path); err != nil {
			return nil, fmt.Errorf("%s: files[%d].path: %w", IndexName, i, err)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("%s: files[%d].path: %s listed twice", IndexName, i, f.Path)
		}
		seen[f.Path] = true
		if i > 0 && x.Files[i-1].Path > f.Path {
			return nil, fmt.Errorf("%s: files[%d].path: %s is out of order", IndexName, i, f.Path)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%s: files[%d].sha256: %q is not a sha256", IndexName, i, f.SHA256)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("%s: files[%d].size: %d", IndexName, i, f.Size)
		}
	}
	return &x, nil
}

var errBadPath = errors.New("not a clean relative path below inputs/, keys/, darksite/, bin/, build/, kube/ or coredns/")

// checkMemberPath refuses any name that could land outside the directory a
// bundle is extracted to, or that is not one of ours.
func checkMemberPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.Contains(p, "\\") ||
		p == ".." || strings.HasPrefix(p, "../") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%q: %w", p, errBadPath)
	}
	top, rest, ok := strings.Cut(p, "/")
	if !ok || rest == "" {
		return fmt.Errorf("%q: %w", p, errBadPath)
	}
	switch top {
	case DirInputs, DirKeys, DirRepo, DirBin, DirBuild, DirKube, DirCoreDNS:
		return nil
	}
	return fmt.Errorf("%q: %w", p, errBadPath)
}
