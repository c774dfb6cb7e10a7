package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/manifest"
)

// Names of the Kubernetes binaries in bin/, when the build's roles carry
// them: the multicall binary, its CycloneDX SBOM (part of the roles'
// content address, so the same bytes are needed to rebuild the same
// build), the probe image's binary, and CoreDNS with its SBOM (the cluster
// DNS image's binary, also part of the kubelet roles' address).
const (
	BinKube        = "kube"
	BinKubeSBOM    = "kube.cdx.json"
	BinProbe       = "kubedos-probe"
	BinCoreDNS     = "coredns"
	BinCoreDNSSBOM = "coredns.cdx.json"
)

// maxProvenanceBytes bounds the provenance read to find the Kubernetes
// binaries: it lists every package, a few hundred kilobytes.
const maxProvenanceBytes = 32 << 20

// kubeDigests are the sha256 the build's provenance records for its
// Kubernetes binaries ("" for one the build has not).
type kubeDigests struct{ kube, probe, coredns string }

// kubeWants reads kubeDigests from the build's provenance, which is
// checked against the signed manifest first.
func kubeWants(src Source, m *manifest.Manifest) (kubeDigests, error) {
	var d kubeDigests
	var want string
	for _, f := range m.Files {
		if f.Path == manifest.ProvenanceRel {
			want = f.SHA256
		}
	}
	if want == "" {
		return d, nil // a build without provenance carries no Kubernetes
	}
	p := filepath.Join(src.BuildDir, manifest.ProvenanceRel)
	raw, err := boundedio.ReadFile(p, maxProvenanceBytes)
	if err != nil {
		return d, err
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != want {
		got := hex.EncodeToString(sum[:])
		return d, fmt.Errorf("%s: sha256 %s, the signed manifest of build %s lists %s", p, got, m.BuildID, want)
	}
	var st struct {
		Predicate struct {
			BuildDefinition struct {
				ResolvedDependencies []struct {
					Name   string            `json:"name"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return d, fmt.Errorf("%s: %w", p, err)
	}
	for _, r := range st.Predicate.BuildDefinition.ResolvedDependencies {
		switch r.Name {
		case BinKube:
			d.kube = r.Digest["sha256"]
		case BinProbe:
			d.probe = r.Digest["sha256"]
		case BinCoreDNS:
			d.coredns = r.Digest["sha256"]
		}
	}
	return d, nil
}

// kubeMembers adds the Kubernetes binaries the build was made with to bin/,
// each checked against the provenance's digest (the SBOM against the
// binary it must describe): a bundle of a Kubernetes build that lacks them
// would not rebuild it.
func kubeMembers(ctx context.Context, src Source, m *manifest.Manifest, add func(name, file string, mode int64, want string)) error {
	d, err := kubeWants(src, m)
	if err != nil {
		return err
	}
	// Sources asked for but not carried would leave a bundle that looks
	// complete and rebuilds nothing.
	if src.KubeModule != "" && d.kube == "" {
		return fmt.Errorf("kube sources %s: build %s carries no kube binary", src.KubeModule, m.BuildID)
	}
	if src.CoreDNSModule != "" && d.coredns == "" {
		return fmt.Errorf("coredns sources %s: build %s carries no coredns binary", src.CoreDNSModule, m.BuildID)
	}
	kube, probe := d.kube, d.probe
	if kube != "" {
		bin := src.Kube
		if bin == "" {
			bin = filepath.Join(src.BinDir, BinKube)
		}
		sbom := bin + ".cdx.json"
		raw, err := boundedio.ReadFile(sbom, 64<<20)
		if err != nil {
			return fmt.Errorf("build %s carries Kubernetes: the kube binary's SBOM: %w (make kube writes it beside the binary; name the binary with --kube)", m.BuildID, err)
		}
		if got := sbomSubject(raw); got != kube {
			return fmt.Errorf("%s describes a binary with sha256 %q, the build's kube is %s", sbom, got, kube)
		}
		add(path.Join(DirBin, BinKube), bin, 0o755, kube)
		add(path.Join(DirBin, BinKubeSBOM), sbom, 0o644, "")
		if src.KubeModule != "" {
			if err := moduleSourceMembers(ctx, DirKube, src.KubeModule, bin, add); err != nil {
				return fmt.Errorf("the kube binary's module sources: %w", err)
			}
		}
	}
	if probe != "" {
		add(path.Join(DirBin, BinProbe), filepath.Join(src.BinDir, BinProbe), 0o755, probe)
	}
	if d.coredns != "" {
		// Where kubedos build looks by default: beside the kube binary.
		bin := src.CoreDNS
		if bin == "" {
			bin = filepath.Join(src.BinDir, BinCoreDNS)
			if src.Kube != "" {
				bin = filepath.Join(filepath.Dir(src.Kube), BinCoreDNS)
			}
		}
		sbom := bin + ".cdx.json"
		raw, err := boundedio.ReadFile(sbom, 64<<20)
		if err != nil {
			return fmt.Errorf("build %s carries CoreDNS: its SBOM: %w (make coredns writes it beside the binary; name the binary with --coredns)", m.BuildID, err)
		}
		if got := sbomSubject(raw); got != d.coredns {
			return fmt.Errorf("%s describes a binary with sha256 %q, the build's coredns is %s", sbom, got, d.coredns)
		}
		add(path.Join(DirBin, BinCoreDNS), bin, 0o755, d.coredns)
		add(path.Join(DirBin, BinCoreDNSSBOM), sbom, 0o644, "")
		if src.CoreDNSModule != "" {
			if err := moduleSourceMembers(ctx, DirCoreDNS, src.CoreDNSModule, bin, add); err != nil {
				return fmt.Errorf("the coredns binary's module sources: %w", err)
			}
		}
	}
	return nil
}

// sbomSubject is the sha256 of the component a CycloneDX SBOM describes.
func sbomSubject(raw []byte) string {
	var b struct {
		Metadata struct {
			Component struct {
				Hashes []struct {
					Alg     string `json:"alg"`
					Content string `json:"content"`
				} `json:"hashes"`
			} `json:"component"`
		} `json:"metadata"`
	}
	if json.Unmarshal(bytes.TrimSpace(raw), &b) != nil {
		return ""
	}
	for _, h := range b.Metadata.Component.Hashes {
		if strings.EqualFold(h.Alg, "SHA-256") {
			return h.Content
		}
	}
	return ""
}
