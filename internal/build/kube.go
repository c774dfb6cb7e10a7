package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/ociarchive"
	"github.com/kubedos/kubedos/internal/spec"
)

// KubeRoot is what a role root carries of Kubernetes (docs/kubernetes.md,
// "Role roots"): the multicall binary and a link per component it runs,
// each component's unit (not enabled: kubedosd starts it; a drop-in on
// Debian's unit for haproxy and keepalived), containerd's
// configuration and the images kubelets run without a registry. A booted
// node then needs only configuration.
type KubeRoot struct {
	Components []kubeplan.Component
	Kube       string // the multicall binary; needed when kubeplan.Links is not empty
	Probe      string // kubedos-probe, the probe image's binary; needed on kubelet roles
	CoreDNS    string // coredns, the cluster DNS image's binary; needed on kubelet roles
}

// ErrKubeInput classes a missing or mismatched Kubernetes build input.
var ErrKubeInput = errdefs.New(errdefs.ErrPrecondition, "Kubernetes build input")

// kubeInputs are the Kubernetes files of one build, read and digested once.
type kubeInputs struct {
	kubeSHA, sbomSHA, probeSHA string
	sbom                       *cdx.BOM
	// CoreDNS's binary and SBOM, as kube's.
	corednsSHA, corednsSBOMSHA string
	corednsSBOM                *cdx.BOM
}

// roleKube is role r's KubeRoot in o's spec, nil when it runs nothing.
func roleKube(o Options, r spec.Role) *KubeRoot {
	if !o.Spec.Workloads.Kubernetes.Enabled {
		return nil
	}
	comps := kubeplan.ComponentsFor(o.Spec, r)
	if len(comps) == 0 {
		return nil
	}
	k := &KubeRoot{Components: comps}
	if len(kubeplan.Links(comps)) > 0 {
		k.Kube = o.Kube
	}
	if slices.Contains(comps, kubeplan.Kubelet) {
		k.Probe, k.CoreDNS = o.Probe, o.CoreDNS
	}
	return k
}

// readKubeInputs digests the binaries the spec's roles need and reads the
// kube binary's SBOM, which must describe that binary. A missing input is
// an error naming how to make it; none is read when no role needs it.
func readKubeInputs(o Options, roles []spec.Role) (*kubeInputs, error) {
	var needKube, needProbe, needCoreDNS bool
	for _, r := range roles {
		if k := roleKube(o, r); k != nil {
			needKube = needKube || k.Kube != ""
			needProbe = needProbe || k.Probe != ""
			needCoreDNS = needCoreDNS || k.CoreDNS != ""
		}
	}
	in := &kubeInputs{}
	var err error
	if needKube {
		if in.kubeSHA, _, err = manifest.FileDigest(o.Kube); err != nil {
			return nil, fmt.Errorf("%w: Kubernetes is enabled and the roles need the multicall binary: %v "+
				"(build it with `make kube`, or name it with kubedos build --kube FILE)", ErrKubeInput, err)
		}
		sbomPath := o.KubeSBOM
		if sbomPath == "" {
			sbomPath = o.Kube + ".cdx.json"
		}
		if in.sbomSHA, _, err = manifest.FileDigest(sbomPath); err != nil {
			return nil, fmt.Errorf("%w: the kube binary's SBOM: %v (`make kube` writes it beside bin/kube)", ErrKubeInput, err)
		}
		if in.sbom, err = ReadSBOM(sbomPath); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKubeInput, err)
		}
		if got := sbomSubjectSHA(in.sbom); got != in.kubeSHA {
			return nil, fmt.Errorf("%w: %s describes a binary with sha256 %q, not %s (%s): run `make kube` again",
				ErrKubeInput, sbomPath, got, o.Kube, in.kubeSHA)
		}
	}
	if needProbe {
		if in.probeSHA, _, err = manifest.FileDigest(o.Probe); err != nil {
			return nil, fmt.Errorf("%w: Kubernetes is enabled and kubelet roles carry the probe image: %v "+
				"(`make build` makes kubedos-probe beside kubedosd)", ErrKubeInput, err)
		}
	}
	if needCoreDNS {
		if in.corednsSHA, _, err = manifest.FileDigest(o.CoreDNS); err != nil {
			return nil, fmt.Errorf("%w: Kubernetes is enabled and kubelet roles carry the CoreDNS image: %v "+
				"(build it with `make coredns`, or name it with kubedos build --coredns FILE)", ErrKubeInput, err)
		}
		sbomPath := o.CoreDNSSBOM
		if sbomPath == "" {
			sbomPath = o.CoreDNS + ".cdx.json"
		}
		if in.corednsSBOMSHA, _, err = manifest.FileDigest(sbomPath); err != nil {
			return nil, fmt.Errorf("%w: the coredns binary's SBOM: %v (`make coredns` writes it beside bin/coredns)", ErrKubeInput, err)
		}
		if in.corednsSBOM, err = ReadSBOM(sbomPath); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKubeInput, err)
		}
		if got := sbomSubjectSHA(in.corednsSBOM); got != in.corednsSHA {
			return nil, fmt.Errorf("%w: %s describes a binary with sha256 %q, not %s (%s): run `make coredns` again",
				ErrKubeInput, sbomPath, got, o.CoreDNS, in.corednsSHA)
		}
	}
	return in, nil
}

func sbomSubjectSHA(b *cdx.BOM) string {
	if b.Metadata == nil || b.Metadata.Component == nil || b.Metadata.Component.Hashes == nil {
		return ""
	}
	for _, h := range *b.Metadata.Component.Hashes {
		if h.Algorithm == cdx.HashAlgoSHA256 {
			return h.Value
		}
	}
	return ""
}

// kubeKeyVersion changes when what installKube writes changes in a way its
// inputs below do not capture.
const kubeKeyVersion = "kube-root-3"

// kubeKey is the part of a role's content address that Kubernetes adds:
// absent (omitted) for a role that runs no component, so those roles keep
// their address.
type kubeKey struct {
	Version    string
	Components []kubeplan.Component
	// sha256 of the binaries and the SBOM (empty where the role has none)
	// and of everything else installKube writes.
	Kube, KubeSBOM, Probe, Wiring string
	CoreDNS, CoreDNSSBOM          string `json:",omitempty"`
}

func newKubeKey(k *KubeRoot, in *kubeInputs) *kubeKey {
	if k == nil {
		return nil
	}
	key := &kubeKey{Version: kubeKeyVersion, Components: k.Components}
	if k.Kube != "" {
		key.Kube, key.KubeSBOM = in.kubeSHA, in.sbomSHA
	}
	if k.Probe != "" {
		key.Probe = in.probeSHA
	}
	if k.CoreDNS != "" {
		key.CoreDNS, key.CoreDNSSBOM = in.corednsSHA, in.corednsSBOMSHA
	}
	h := sha256.New()
	for _, c := range k.Components {
		fmt.Fprintf(h, "%s\x00%s\x00", kubeplan.UnitName(c), kubeplan.Unit(c))
		if f := kubeplan.DropInFile(c); f != "" {
			fmt.Fprintf(h, "%s\x00%s\x00", f, kubeplan.DropIn(c))
		}
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s", kubeplan.ContainerdConfig(), kubeplan.PauseImage, kubeplan.ProbeImage,
		kubeplan.Links(k.Components), kubeplan.CoreDNSImage, corednsUser)
	fmt.Fprintf(h, "\x00%s\x00%s", kubeplan.BridgeNetfilterModules, kubeplan.BridgeNetfilterSysctl)
	key.Wiring = hex.EncodeToString(h.Sum(nil))
	return key
}

// Image users: the pause image runs as upstream's (65535), the probe as
// nobody, CoreDNS as upstream's image's nonroot user; none needs root.
const (
	pauseUser   = "65535:65535"
	probeUser   = "65534:65534"
	corednsUser = "65532:65532"
)

// installKube writes k into the root at root. Debian's packages are
// already installed (catatonit is read from the root for the pause image).
func installKube(root string, k *KubeRoot, debArch string, epoch int64) error {
	r := func(p string) string { return filepath.Join(root, p) }
	write := func(p string, data []byte, mode os.FileMode) error {
		if err := os.MkdirAll(filepath.Dir(r(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(r(p), data, mode); err != nil {
			return err
		}
		return os.Chmod(r(p), mode)
	}
	link := func(p, target string) error {
		if err := os.MkdirAll(filepath.Dir(r(p)), 0o755); err != nil {
			return err
		}
		if err := os.Remove(r(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return os.Symlink(target, r(p))
	}
	if links := kubeplan.Links(k.Components); len(links) > 0 {
		bin, err := os.ReadFile(k.Kube)
		if err != nil {
			return fmt.Errorf("kube binary: %w", err)
		}
		if err := write(kubeplan.BinDir+"/"+kubeplan.Kube, bin, 0o755); err != nil {
			return err
		}
		for _, name := range links {
			// Relative: the same link in the image and under a build's root.
			if err := link(kubeplan.BinDir+"/"+name, kubeplan.Kube); err != nil {
				return err
			}
		}
	}
	for _, c := range k.Components {
		if f := kubeplan.DropInFile(c); f != "" {
			// Debian's unit with our drop-in; its package enabled it (with
			// Debian's configuration): kubedosd starts it instead.
			if err := write(f, []byte(kubeplan.DropIn(c)), 0o644); err != nil {
				return err
			}
			if err := dropLinksTo(r("/etc/systemd/system"), kubeplan.UnitName(c)); err != nil {
				return err
			}
			continue
		}
		if err := write("/etc/systemd/system/"+kubeplan.UnitName(c), []byte(kubeplan.Unit(c)), 0o644); err != nil {
			return err
		}
	}
	if slices.Contains(k.Components, kubeplan.Etcd) {
		// etcd-server enables its own unit, with Debian's defaults, under
		// its name and an alias (etcd2.service): drop those links, mask it.
		if err := dropLinksTo(r("/etc/systemd/system"), kubeplan.DebianEtcdUnit); err != nil {
			return err
		}
		if err := link("/etc/systemd/system/"+kubeplan.DebianEtcdUnit, "/dev/null"); err != nil {
			return err
		}
	}
	if !slices.Contains(k.Components, kubeplan.Kubelet) {
		return nil
	}
	if err := write(kubeplan.ContainerdConfigFile, []byte(kubeplan.ContainerdConfig()), 0o644); err != nil {
		return err
	}
	if err := write(kubeplan.BridgeNetfilterModulesFile, []byte(kubeplan.BridgeNetfilterModules), 0o644); err != nil {
		return err
	}
	if err := write(kubeplan.BridgeNetfilterSysctlFile, []byte(kubeplan.BridgeNetfilterSysctl), 0o644); err != nil {
		return err
	}
	arch, err := ociArch(debArch)
	if err != nil {
		return err
	}
	catatonit, err := os.ReadFile(r("/usr/bin/catatonit"))
	if err != nil {
		return fmt.Errorf("pause image: catatonit is not in the root (is it in the lock? kubedos lock --update): %w", err)
	}
	probe, err := os.ReadFile(k.Probe)
	if err != nil {
		return fmt.Errorf("probe image: %w", err)
	}
	coredns, err := os.ReadFile(k.CoreDNS)
	if err != nil {
		return fmt.Errorf("coredns image: %w", err)
	}
	created := time.Unix(epoch, 0)
	for name, img := range map[string]ociarchive.Image{
		"pause": {Name: kubeplan.PauseImage, Entrypoint: []string{"/catatonit", "-P"}, User: pauseUser,
			Files: []ociarchive.File{{Path: "catatonit", Data: catatonit, Mode: 0o755}}},
		"probe": {Name: kubeplan.ProbeImage, Entrypoint: []string{"/kubedos-probe"}, User: probeUser,
			Files: []ociarchive.File{{Path: "kubedos-probe", Data: probe, Mode: 0o755}}},
		kubeplan.CoreDNS: {Name: kubeplan.CoreDNSImage, Entrypoint: []string{"/" + kubeplan.CoreDNS}, User: corednsUser,
			Files: []ociarchive.File{{Path: kubeplan.CoreDNS, Data: coredns, Mode: 0o755}}},
	} {
		img.Architecture, img.OS, img.Created = arch, "linux", created
		b, _, err := ociarchive.Archive(img)
		if err != nil {
			return fmt.Errorf("%s image: %w", name, err)
		}
		if err := write(kubeplan.ImageArchive(name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// dropLinksTo removes the symbolic links in dir and its *.wants and
// *.requires directories that point at a unit file named unit: its
// enablement and aliases.
func dropLinksTo(dir, unit string) error {
	for _, pattern := range []string{"*", "*.wants/*", "*.requires/*"} {
		links, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return err
		}
		for _, l := range links {
			if t, err := os.Readlink(l); err == nil && filepath.Base(t) == unit {
				if err := os.Remove(l); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ociArch is the OCI (GOARCH) name of a Debian architecture.
func ociArch(deb string) (string, error) {
	switch deb {
	case "amd64", "arm64", "riscv64", "s390x":
		return deb, nil
	case "ppc64el":
		return "ppc64le", nil
	}
	return "", fmt.Errorf("images for Debian architecture %q: not supported", deb)
}

// addKubeSBOM adds the kube binary to a role's SBOM: itself (an
// application, with its sha256, where it is installed) and every Go module
// it links from its own SBOM (with go.sum hashes and licenses), which
// depend on nothing the lock pins.
func addKubeSBOM(bom, kube *cdx.BOM, kubeSHA string) {
	addGoBinarySBOM(bom, kube, kubeplan.Kube, kubeplan.Version, kubeSHA, kubeplan.BinDir+"/"+kubeplan.Kube)
}

// addCoreDNSSBOM adds CoreDNS as addKubeSBOM adds kube: it is in the
// root inside its image's archive.
func addCoreDNSSBOM(bom, coredns *cdx.BOM, sha string) {
	addGoBinarySBOM(bom, coredns, kubeplan.CoreDNS, kubeplan.CoreDNSVersion, sha,
		kubeplan.ImageArchive(kubeplan.CoreDNS)+"#/"+kubeplan.CoreDNS)
}

// addGoBinarySBOM adds a Go binary and its modules to bom. A module
// already listed (kube and CoreDNS share client-go and more) is listed
// once, each binary depending on it.
func addGoBinarySBOM(bom, bin *cdx.BOM, name, version, sha, at string) {
	ref := "kubedos:" + name + "@" + version
	self := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeApplication, Name: name, Version: version,
		Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: sha}},
		Properties: &[]cdx.Property{{Name: PropInstalledAt, Value: at}}}
	comps := append(*bom.Components, self)
	have := map[string]bool{}
	for _, c := range comps {
		have[c.BOMRef] = true
	}
	var deps []string
	if bin.Components != nil {
		for _, c := range *bin.Components {
			if !have[c.BOMRef] || c.BOMRef == "" {
				comps = append(comps, c)
				have[c.BOMRef] = true
			}
			deps = append(deps, c.BOMRef)
		}
	}
	bom.Components = &comps
	d := []cdx.Dependency{{Ref: ref, Dependencies: &deps}}
	if bom.Dependencies != nil {
		d = append(*bom.Dependencies, d...)
	}
	bom.Dependencies = &d
}

// PropInstalledAt names where in the root a non-Debian component is.
const PropInstalledAt = "kubedos:path"

// isKubeComponent tells the role SBOM's kube binary and Go modules, which
// are pinned by the binary's digest and go.sum, from Debian packages,
// which the lock pins.
func isKubeComponent(c cdx.Component) (bool, string) {
	switch {
	case c.Type == cdx.ComponentTypeApplication && (c.Name == kubeplan.Kube || c.Name == kubeplan.CoreDNS):
		if c.Hashes == nil || len(*c.Hashes) == 0 || len((*c.Hashes)[0].Value) != 64 {
			return true, fmt.Sprintf("component %s has no sha256", c.Name)
		}
		return true, ""
	case c.Name == "stdlib" && strings.HasPrefix(c.PackageURL, "pkg:golang/stdlib@"):
		return true, "" // the toolchain's: no go.sum line
	case strings.HasPrefix(c.PackageURL, "pkg:golang/"):
		if c.Properties != nil {
			for _, p := range *c.Properties {
				if p.Name == PropGoSum && strings.HasPrefix(p.Value, "h1:") {
					return true, ""
				}
			}
		}
		return true, fmt.Sprintf("Go module %s has no go.sum hash", c.Name)
	}
	return false, ""
}

// kubeDeps are the Kubernetes binaries the build's roles carry, as the
// provenance's resolved dependencies.
func kubeDeps(o Options, roles []spec.Role, in *kubeInputs) []resource {
	var kube, probe, coredns bool
	for _, r := range roles {
		if k := roleKube(o, r); k != nil {
			kube, probe, coredns = kube || k.Kube != "", probe || k.Probe != "", coredns || k.CoreDNS != ""
		}
	}
	var out []resource
	if kube {
		out = append(out, resource{Name: kubeplan.Kube, URI: GoPURL("k8s.io/kubernetes", kubeplan.Version),
			Digest: map[string]string{"sha256": in.kubeSHA}})
	}
	if probe {
		out = append(out, resource{Name: "kubedos-probe", Digest: map[string]string{"sha256": in.probeSHA}})
	}
	if coredns {
		out = append(out, resource{Name: kubeplan.CoreDNS, URI: GoPURL("github.com/coredns/coredns", kubeplan.CoreDNSVersion),
			Digest: map[string]string{"sha256": in.corednsSHA}})
	}
	return out
}
