package hub

import (
	"fmt"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/spec"
)

// ManifestPolicy says what a node must run: its name and role must be in the
// spec's topology, and it must have booted its role's image from one signed
// build (the caller verifies the manifest's signature before use).
type ManifestPolicy struct {
	Spec     *spec.ClusterSpec
	Manifest *manifest.Manifest
}

// Expected returns the build-id and PCR prediction of the node's role.
func (p ManifestPolicy) Expected(name, role string) (string, measure.Prediction, error) {
	n, ok := p.Spec.NodeByName(name)
	if !ok {
		return "", measure.Prediction{}, fmt.Errorf("no node %q in cluster %s", name, p.Spec.Metadata.Name)
	}
	if string(n.Role) != role {
		return "", measure.Prediction{}, fmt.Errorf("node %s has role %s in the spec, not %s", name, n.Role, role)
	}
	rm, ok := p.Manifest.Roles[role]
	if !ok {
		return "", measure.Prediction{}, fmt.Errorf("build %s has no image for role %s", p.Manifest.BuildID, role)
	}
	pred, err := build.PredictedPCRs(rm)
	if err != nil {
		return "", measure.Prediction{}, err
	}
	return rm.RoleID, pred, nil
}

// ManifestBuildID is the build-id of the signed build the policy expects,
// so retiring it refuses every role image of it.
func (p ManifestPolicy) ManifestBuildID() string { return p.Manifest.BuildID }
