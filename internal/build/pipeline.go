package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/tpmseal"
	"golang.org/x/sync/errgroup"
)

// FormatVersion changes whenever the image layout or build steps change in
// a way that changes bytes; it is part of every role's content address.
const FormatVersion = "kubedos-image-v4"

// Options are the inputs of one build.
type Options struct {
	Spec      *spec.ClusterSpec
	SpecBytes []byte // the spec file as written: its digest identifies the build
	Lock      *lock.Lock
	LockBytes []byte
	Repo      *lock.Repo // the darksite repo, already fetched
	Keys      *sign.KeySet
	Kubedosd  string // static node binaries, built reproducibly
	Init      string
	// Kube is the Kubernetes multicall binary (make kube), KubeSBOM its
	// CycloneDX SBOM (default Kube + ".cdx.json"), Probe kubedos-probe.
	// Read only when the spec enables Kubernetes and a role needs them.
	Kube     string
	KubeSBOM string
	Probe    string
	// CoreDNS is the cluster DNS's binary (make coredns), CoreDNSSBOM its
	// SBOM (default CoreDNS + ".cdx.json"): kubelet roles carry its image.
	CoreDNS     string
	CoreDNSSBOM string
	Revision    string // source revision of kubedos, when known
	OutDir      string
	// Jobs is how many roles are built at once (0: the number of CPUs, at
	// most 4). Each role's derive, hashing and initrd run on one core;
	// two at once fill a two-core machine.
	Jobs     int
	Progress func(role, step string)
}

// Result is a finished (or found) build.
type Result struct {
	Dir      string
	BuildID  string
	Reused   bool     // the build already existed: nothing was done
	Built    []string // roles built now (others came from the role cache)
	Manifest *manifest.Manifest
}

// ErrNeedRoot is returned when the build is not run as root.
var ErrNeedRoot = errors.New("kubedos build needs root: mmdebstrap composes each root with real file ownership")

// Build makes every role's image and the signed manifest of the cluster.
// Outputs are content addressed: a role whose inputs did not change comes
// from the role cache, and an existing build directory is never touched.
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.Lock.Covers(o.Spec); err != nil {
		return nil, fmt.Errorf("the lock does not cover the spec (run kubedos lock --update): %w", err)
	}
	if !o.Keys.Private {
		return nil, fmt.Errorf("keys in %s are a public-only copy: building needs the db and artifact private keys", o.Keys.Dir)
	}
	tools, err := ToolVersions(ctx)
	if err != nil {
		return nil, err
	}
	kdSum, _, err := manifest.FileDigest(o.Kubedosd)
	if err != nil {
		return nil, fmt.Errorf("kubedosd binary: %w", err)
	}
	initSum, _, err := manifest.FileDigest(o.Init)
	if err != nil {
		return nil, fmt.Errorf("kubedos-init binary: %w", err)
	}
	roles := lock.Roles(o.Spec)
	kin, err := readKubeInputs(o, roles)
	if err != nil {
		return nil, err
	}
	m := &manifest.Manifest{
		APIVersion: "kubedos.io/v1alpha1", Kind: "BuildManifest", Cluster: o.Spec.Metadata.Name,
		SpecDigest: "sha256:" + sha256Hex(o.SpecBytes), LockDigest: "sha256:" + sha256Hex(o.LockBytes),
		Source: manifest.Source{Revision: o.Revision, KubedosdSHA256: kdSum, InitSHA256: initSum},
		Tools:  tools, Epoch: o.Lock.SourceDateEpoch, DBCert: sha256Hex(o.Keys.DB.Raw), PCRPolicyKey: tpmseal.Fingerprint(o.Keys.PCRPolicyPub), Roles: map[string]manifest.RoleManifest{},
		Machines: map[string]string{"proxmox": manifest.ProxmoxMachine},
	}
	roleIDs := map[spec.Role]string{}
	for _, r := range roles {
		roleIDs[r] = roleKey(o, r, m, newKubeKey(roleKube(o, r), kin))
	}
	m.BuildID = buildID(m, roleIDs)
	clusterDir := filepath.Join(o.OutDir, m.Cluster)
	final := filepath.Join(clusterDir, m.BuildID)
	if _, err := os.Stat(filepath.Join(final, manifest.ManifestFile)); err == nil {
		existing, _, err := manifest.Read(filepath.Join(final, manifest.ManifestFile))
		if err != nil {
			return nil, fmt.Errorf("build %s exists but its manifest is unreadable: %w", final, err)
		}
		return &Result{Dir: final, BuildID: m.BuildID, Reused: true, Manifest: existing}, nil
	}
	if os.Geteuid() != 0 {
		return nil, ErrNeedRoot
	}
	res := &Result{Dir: final, BuildID: m.BuildID, Manifest: m}
	cache := filepath.Join(clusterDir, ".roles")
	roleDirs := map[spec.Role]string{}
	var todo []spec.Role
	for _, r := range roles {
		if dir, ok := cachedRole(cache, roleIDs[r]); ok {
			roleDirs[r] = dir
			continue
		}
		todo = append(todo, r)
	}
	if len(todo) > 0 {
		base, err := makeBase(ctx, o, cache)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(filepath.Dir(base))
		dirs, err := buildRoles(ctx, o, todo, roleIDs, cache, kin, base)
		if err != nil {
			return nil, err
		}
		for i, r := range todo {
			res.Built = append(res.Built, string(r))
			roleDirs[r] = dirs[i]
		}
	}
	if err := assemble(o, m, roles, roleDirs, final, kubeDeps(o, roles, kin)); err != nil {
		return nil, err
	}
	return res, nil
}

// buildRoles builds the roles of todo from the base, o.Jobs at a time;
// the first error cancels the rest. With one job the last role takes the
// base instead of a copy; with more, every role copies it (a copy is
// under a second; another role may still be copying).
func buildRoles(ctx context.Context, o Options, todo []spec.Role, roleIDs map[spec.Role]string, cache string, kin *kubeInputs, base string) ([]string, error) {
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = min(runtime.NumCPU(), 4)
	}
	jobs = min(jobs, len(todo))
	dirs := make([]string, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, r := range todo {
		take := jobs == 1 && i == len(todo)-1
		g.Go(func() error {
			dir, err := buildRole(gctx, o, r, roleIDs[r], cache, kin, base, take)
			dirs[i] = dir
			return err
		})
	}
	return dirs, g.Wait()
}

// roleKey is the content address of a role's image: everything that can
// change its bytes. kube is nil for a role that runs no Kubernetes
// component, and then leaves the address as it was before Kubernetes.
func roleKey(o Options, r spec.Role, m *manifest.Manifest, kube *kubeKey) string {
	var pkgs []string
	for _, name := range o.Lock.Roles[r] {
		p, _ := o.Lock.Package(name)
		pkgs = append(pkgs, p.Name+"="+p.Version+"@"+p.SHA256)
	}
	sort.Strings(pkgs)
	key := struct {
		Format, Role, Suite, Cmdline string
		Epoch                        int64
		Packages, Requests, Modules  []string
		Base                         []string // what the base root the role is derived from requests
		Kubedosd, Init, DBCert, CA   string
		PCRPolicy                    string
		Artifact                     []byte
		Tools                        map[string]string
		Kube                         *kubeKey `json:",omitempty"`
	}{FormatVersion, string(r), o.Lock.Suite, BaseCmdline, o.Lock.SourceDateEpoch, pkgs, lock.Requests(o.Spec, r),
		InitrdModules, lock.BaseRequests(o.Spec), m.Source.KubedosdSHA256, m.Source.InitSHA256, m.DBCert, sha256Hex(o.Keys.CA.Raw), tpmseal.Fingerprint(o.Keys.PCRPolicyPub), o.Keys.SigningPub, m.Tools, kube}
	b, _ := json.Marshal(key)
	return sha256Hex(b)[:16]
}

func buildID(m *manifest.Manifest, roleIDs map[spec.Role]string) string {
	var parts []string
	for r, id := range roleIDs {
		parts = append(parts, string(r)+"="+id)
	}
	sort.Strings(parts)
	return sha256Hex([]byte(strings.Join(append(parts, m.SpecDigest, m.LockDigest, FormatVersion), "\n")))[:20]
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// roleRecord is what the role cache keeps beside a role's files.
type roleRecord struct {
	Role     string       `json:"role"`
	RoleID   string       `json:"roleID"`
	Image    *ImageResult `json:"image"`
	Packages int          `json:"packages"`
	// Files are the digests of the role's files (roleFiles), taken when
	// the role was built: the build's manifest lists them without reading
	// ~1 GB a role back at the end (the last role waited on every role's
	// digests). Role caches from before it was recorded lack it.
	Files []manifest.FileEntry `json:"files,omitempty"`
}

const roleRecordFile = "role.json"

// cachedRole is the role cache's directory of role id, if it is complete.
func cachedRole(cache, id string) (string, bool) {
	dir := filepath.Join(cache, id)
	if _, err := os.Stat(filepath.Join(dir, roleRecordFile)); err != nil {
		return "", false
	}
	return dir, true
}

// makeBase composes the base root the build's roles are derived from in a
// temporary directory of the role cache (the roles' own temporary
// directories are beside it, so the last role can move it); the caller
// removes its parent.
func makeBase(ctx context.Context, o Options, cache string) (string, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, ".tmp-base-")
	if err != nil {
		return "", err
	}
	if o.Progress != nil {
		o.Progress("base", "rootfs (mmdebstrap, offline)")
	}
	base := filepath.Join(tmp, "rootfs")
	err = MakeBase(ctx, BaseInput{Architecture: o.Lock.Architecture, Sources: o.Repo.MmdebstrapSource(),
		Packages: lock.BaseRequests(o.Spec), Epoch: o.Lock.SourceDateEpoch, Out: base})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	return base, nil
}

// buildRole builds a role's image from the base root: rootfs, image,
// SBOM, into a temporary directory renamed into the cache at the end.
// takeBase moves the base into the role's root instead of copying it.
func buildRole(ctx context.Context, o Options, r spec.Role, id, cache string, kin *kubeInputs, base string, takeBase bool) (string, error) {
	dir := filepath.Join(cache, id)
	step := func(s string) {
		if o.Progress != nil {
			o.Progress(string(r), s)
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, ".tmp-"+id+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	artifactPub, err := os.ReadFile(o.Keys.Path(sign.FileSigningPub))
	if err != nil {
		return "", err
	}
	step("rootfs (from the base, mmdebstrap offline)")
	release, err := MakeRootfs(ctx, RootfsInput{Role: string(r), Architecture: o.Lock.Architecture, Sources: o.Repo.MmdebstrapSource(),
		Base: base, TakeBase: takeBase, BasePackages: lock.BaseRequests(o.Spec), Packages: lock.Requests(o.Spec, r), Epoch: o.Lock.SourceDateEpoch, Kubedosd: o.Kubedosd, Out: rootfs,
		CACert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Keys.CA.Raw}), ArtifactPub: artifactPub,
		DBCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Keys.DB.Raw}), Kube: roleKube(o, r)})
	defer release() // before tmp is removed: defers run last first
	if err != nil {
		return "", err
	}
	installed, err := InstalledPackages(rootfs)
	if err != nil {
		return "", err
	}
	if err := onlyLocked(installed, o.Lock.Roles[r], r); err != nil {
		return "", err
	}
	bom, err := MakeSBOM(installed, o.Lock, string(r), id)
	if err != nil {
		return "", err
	}
	if k := roleKube(o, r); k != nil && k.Kube != "" {
		addKubeSBOM(bom, kin.sbom, kin.kubeSHA)
	}
	if k := roleKube(o, r); k != nil && k.CoreDNS != "" {
		addCoreDNSSBOM(bom, kin.corednsSBOM, kin.corednsSHA)
	}
	out := filepath.Join(tmp, "out")
	img, err := BuildImage(ctx, ImageInput{Role: string(r), RoleID: id, Rootfs: rootfs, Init: o.Init, Epoch: o.Lock.SourceDateEpoch,
		Signer: keySigner{o.Keys}, Out: out, Progress: step})
	if err != nil {
		return "", err
	}
	if err := WriteSBOM(bom, filepath.Join(out, FileSBOM)); err != nil {
		return "", err
	}
	step("digests")
	files, err := digestFiles(out, roleFiles)
	if err != nil {
		return "", err
	}
	rec, _ := json.MarshalIndent(roleRecord{Role: string(r), RoleID: id, Image: img, Packages: len(installed), Files: files}, "", "  ")
	if err := durable.WriteFile(filepath.Join(out, roleRecordFile), rec, 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return "", err
	}
	if err := durable.PublishDir(out, dir); err != nil {
		return "", fmt.Errorf("store role %s image: %w", r, err)
	}
	return dir, nil
}

// FileSBOM is each role's CycloneDX SBOM.
const FileSBOM = "sbom.cdx.json"

// keySigner signs EFI binaries with the key set's db key.
type keySigner struct{ ks *sign.KeySet }

func (k keySigner) SignPE(ctx context.Context, in, out string) error {
	return sign.SignPE(ctx, in, out, k.ks.Path(sign.FileDBCert), k.ks.Path(sign.FileDBKey))
}

func (k keySigner) PCRPolicyPEM() []byte {
	pem, _ := tpmseal.EncodePublicKey(k.ks.PCRPolicyPub) // LoadKeySet checked it
	return pem
}

func (k keySigner) SignPCR11(uki string) ([]byte, error) {
	key, err := k.ks.PCRPolicyKey()
	if err != nil {
		return nil, err
	}
	return PCRSig(uki, key)
}

// roleFiles are linked from the role cache into a build directory.
var roleFiles = []string{FileRoot, FileVerity, FileUKI, FileBootEFI, FileInitrd, FileDiskRaw, FileDiskQcow2, FileCmdline, FileSBOM}

// assemble lays out a build directory from the role cache, writes the
// manifest, provenance and signature, and renames it into place.
func assemble(o Options, m *manifest.Manifest, roles []spec.Role, roleDirs map[spec.Role]string, final string, binDeps []resource) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-"+m.BuildID+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var pkgDeps []resource
	seenPkg := map[string]bool{}
	known := map[string]manifest.FileEntry{} // digests the role cache recorded
	for _, r := range roles {
		var rec roleRecord
		b, err := os.ReadFile(filepath.Join(roleDirs[r], roleRecordFile))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("role cache %s: %w", roleDirs[r], err)
		}
		dst := filepath.Join(tmp, "roles", string(r))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		for _, f := range roleFiles {
			if err := linkOrCopy(filepath.Join(roleDirs[r], f), filepath.Join(dst, f)); err != nil {
				return err
			}
		}
		for _, f := range rec.Files {
			f.Path = manifest.RoleFile(string(r), f.Path)
			known[f.Path] = f
		}
		img := rec.Image
		pred, err := Predict(roleDirs[r], o.Keys)
		if err != nil {
			return fmt.Errorf("role %s: %w", r, err)
		}
		pcrs, err := json.Marshal(pred)
		if err != nil {
			return err
		}
		m.Roles[string(r)] = manifest.RoleManifest{RoleID: rec.RoleID, Kernel: img.Kernel, Cmdline: img.Cmdline, RootHash: img.Verity.RootHash,
			Salt: img.Verity.Salt, DataBlocks: img.Verity.DataBlocks, UKIPath: img.UKIName, Packages: rec.Packages, Partitions: img.Partitions,
			PCRs: pcrs}
		for _, name := range o.Lock.Roles[r] {
			if p, ok := o.Lock.Package(name); ok && !seenPkg[name] {
				seenPkg[name] = true
				pkgDeps = append(pkgDeps, resource{URI: PURL(p, o.Lock.Suite), Digest: map[string]string{"sha256": p.SHA256}})
			}
		}
	}
	for rel, data := range map[string][]byte{manifest.SpecFile: o.SpecBytes, manifest.LockFile: o.LockBytes} {
		if err := os.MkdirAll(filepath.Join(tmp, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		if err := durable.WriteFile(filepath.Join(tmp, rel), data, 0o644); err != nil {
			return err
		}
	}
	if m.Files, err = listFiles(tmp, known); err != nil {
		return err
	}
	prov, err := provenanceFor(m, binDeps, pkgDeps)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(tmp, manifest.ProvenanceRel), prov, 0o644); err != nil {
		return err
	}
	m.Files = append(m.Files, manifest.FileEntry{Path: manifest.ProvenanceRel, SHA256: sha256Hex(prov), Size: int64(len(prov))})
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	if err := durable.WriteFile(filepath.Join(tmp, manifest.ManifestFile), raw, 0o644); err != nil {
		return err
	}
	key, err := sign.ReadSigningKey(o.Keys.Path(sign.FileSigningKey))
	if err != nil {
		return err
	}
	sig, err := sign.SignBlob(key, raw)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(tmp, manifest.SignatureFile), sig, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return err
	}
	if err := durable.PublishDir(tmp, final); err != nil {
		return fmt.Errorf("publish build %s: %w", final, err)
	}
	return nil
}
