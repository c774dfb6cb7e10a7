package bundle

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// Source is what a bundle is made from.
type Source struct {
	BuildDir string // a build directory (manifest.json, manifest.sig, …)
	RepoDir  string // the darksite repository of the build's lock
	BinDir   string // kubedosd and kubedos-init (and kubedos-probe), the ones the build was made with
	// Kube is the Kubernetes multicall binary the build was made with
	// (its SBOM beside it), for a build whose roles carry it; default
	// BinDir/kube.
	Kube string
	// KubeModule is the Kubernetes wrapper module (kube/ of the source
	// tree) the kube binary was built from; with it the bundle also
	// carries the module and a Go module proxy of what its build reads
	// (DirKube), from this machine's module cache.
	KubeModule string
	// CoreDNS is the CoreDNS binary the build was made with (its SBOM
	// beside it), for a build whose kubelet roles carry its image;
	// default: coredns beside Kube (kubedos build's default).
	CoreDNS string
	// CoreDNSModule is the CoreDNS wrapper module (coredns/) the CoreDNS
	// binary was built from, carried as KubeModule is (DirCoreDNS).
	CoreDNSModule string
	Keys          *sign.KeySet   // public halves go in; the artifact key signs the index
	Images        bool           // include the boot images (not disk.raw: qcow2 holds the same disk)
	Progress      func(Progress) // optional
}

// Progress reports bytes written so far.
type Progress struct {
	Done, Total int64
	Path        string
}

// Names of the node binaries in bin/.
const (
	BinKubedosd = "kubedosd"
	BinInit     = "kubedos-init"
)

type member struct {
	name, src string
	mode      int64
	want      string // sha256 the member must have (from the manifest), or ""
}

// Create writes the bundle of src to out: staged beside it, renamed into
// place only when whole; an existing out is never replaced. The build's
// manifest signature, the spec and lock digests and the node binaries'
// digests are checked against the manifest first: a bundle that would not
// rebuild the same build is refused.
func Create(ctx context.Context, src Source, out string) (*Index, error) {
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("bundle %s exists; bundles are never overwritten", out)
	}
	m, err := checkedManifest(src)
	if err != nil {
		return nil, err
	}
	members, err := collect(ctx, src, m)
	if err != nil {
		return nil, err
	}
	x := &Index{APIVersion: APIVersion, Kind: Kind, Cluster: m.Cluster, BuildID: m.BuildID, Epoch: m.Epoch,
		Images: src.Images, SigningKey: sign.KeyID(src.Keys.SigningPub)}
	for _, mb := range members {
		sum, size, err := manifest.FileDigest(mb.src)
		if err != nil {
			return nil, err
		}
		if mb.want != "" && sum != mb.want {
			return nil, fmt.Errorf("%s: sha256 %s, the signed manifest of build %s lists %s", mb.src, sum, m.BuildID, mb.want)
		}
		x.Files = append(x.Files, manifest.FileEntry{Path: mb.name, SHA256: sum, Size: size})
	}
	idx, err := json.MarshalIndent(x, "", "  ")
	if err != nil {
		return nil, err
	}
	idx = append(idx, '\n')
	key, err := src.Keys.SigningKey()
	if err != nil {
		return nil, fmt.Errorf("bundle: signing the index needs the artifact key: %w", err)
	}
	sig, err := sign.SignBlob(key, idx)
	if err != nil {
		return nil, err
	}
	if err := writeTar(ctx, out, x, idx, sig, members, src.Progress); err != nil {
		return nil, err
	}
	return x, nil
}

// checkedManifest reads the build's manifest and checks its signature with
// the artifact key the bundle will be signed with.
func checkedManifest(src Source) (*manifest.Manifest, error) {
	m, raw, err := manifest.Read(filepath.Join(src.BuildDir, manifest.ManifestFile))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(src.BuildDir, manifest.SignatureFile))
	if err != nil {
		return nil, err
	}
	if err := sign.VerifyBlob(src.Keys.SigningPub, raw, sig); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(src.BuildDir, manifest.SignatureFile), err)
	}
	return m, nil
}

// checkedAcceptance reports whether the build was sealed (kubedos cluster
// seal): its acceptance record and signature, when there, are the bundle's
// recovery anchors, checked like the manifest before a byte is written. A
// record without its signature, one the artifact key did not sign or one
// of another build is refused, naming the file.
func checkedAcceptance(src Source, m *manifest.Manifest) (bool, error) {
	rp := filepath.Join(src.BuildDir, manifest.AcceptanceFile)
	sp := filepath.Join(src.BuildDir, manifest.AcceptanceSigFile)
	_, rerr := os.Lstat(rp)
	_, serr := os.Lstat(sp)
	switch {
	case errors.Is(rerr, fs.ErrNotExist) && errors.Is(serr, fs.ErrNotExist):
		return false, nil
	case rerr != nil && !errors.Is(rerr, fs.ErrNotExist):
		return false, rerr
	case serr != nil && !errors.Is(serr, fs.ErrNotExist):
		return false, serr
	case rerr != nil:
		return false, fmt.Errorf("%s: a signature without its acceptance record %s", sp, manifest.AcceptanceFile)
	case serr != nil:
		return false, fmt.Errorf("%s: an acceptance record without its signature %s", rp, manifest.AcceptanceSigFile)
	}
	raw, err := boundedio.ReadFile(rp, manifest.MaxAcceptanceBytes)
	if err != nil {
		return false, err
	}
	sig, err := boundedio.ReadFile(sp, maxSigBytes)
	if err != nil {
		return false, err
	}
	if _, err := checkAcceptance(src.Keys.SigningPub, raw, sig, m.Cluster, m.BuildID); err != nil {
		return false, fmt.Errorf("%s: %w", rp, err)
	}
	return true, nil
}

// collect lists the members, sorted by name.
func collect(ctx context.Context, src Source, m *manifest.Manifest) ([]member, error) {
	var ms []member
	add := func(name, file string, mode int64, want string) {
		ms = append(ms, member{name: name, src: file, mode: mode, want: want})
	}
	add(path.Join(DirInputs, path.Base(manifest.SpecFile)), filepath.Join(src.BuildDir, filepath.FromSlash(manifest.SpecFile)), 0o644, strings.TrimPrefix(m.SpecDigest, "sha256:"))
	add(path.Join(DirInputs, path.Base(manifest.LockFile)), filepath.Join(src.BuildDir, filepath.FromSlash(manifest.LockFile)), 0o644, strings.TrimPrefix(m.LockDigest, "sha256:"))
	for _, rel := range sign.PublicFiles() {
		add(path.Join(DirKeys, rel), src.Keys.Path(rel), 0o644, "")
	}
	add(path.Join(DirBin, BinKubedosd), filepath.Join(src.BinDir, BinKubedosd), 0o755, m.Source.KubedosdSHA256)
	add(path.Join(DirBin, BinInit), filepath.Join(src.BinDir, BinInit), 0o755, m.Source.InitSHA256)
	if err := kubeMembers(ctx, src, m, add); err != nil {
		return nil, err
	}
	bdir := path.Join(DirBuild, m.BuildID)
	add(path.Join(bdir, manifest.ManifestFile), filepath.Join(src.BuildDir, manifest.ManifestFile), 0o644, "")
	add(path.Join(bdir, manifest.SignatureFile), filepath.Join(src.BuildDir, manifest.SignatureFile), 0o644, "")
	sealed, err := checkedAcceptance(src, m)
	if err != nil {
		return nil, err
	}
	if sealed {
		add(path.Join(bdir, manifest.AcceptanceFile), filepath.Join(src.BuildDir, manifest.AcceptanceFile), 0o644, "")
		add(path.Join(bdir, manifest.AcceptanceSigFile), filepath.Join(src.BuildDir, manifest.AcceptanceSigFile), 0o644, "")
	}
	for _, f := range m.Files {
		if !src.Images && !isRecord(f.Path) || path.Base(f.Path) == "disk.raw" {
			continue
		}
		if checkMemberPath(path.Join(bdir, f.Path)) != nil {
			return nil, fmt.Errorf("build %s: manifest lists %q", m.BuildID, f.Path)
		}
		add(path.Join(bdir, f.Path), filepath.Join(src.BuildDir, filepath.FromSlash(f.Path)), 0o644, f.SHA256)
	}
	repo, err := filepath.Abs(src.RepoDir)
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && p != repo {
				return fs.SkipDir // a fetch's staging directory
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("darksite repo: %s is not a regular file", p)
		}
		rel, err := filepath.Rel(repo, p)
		if err != nil {
			return err
		}
		add(path.Join(DirRepo, filepath.ToSlash(rel)), p, 0o644, "")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("darksite repo %s: %w", src.RepoDir, err)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	return ms, nil
}

// isRecord: the build files that describe it rather than boot it.
func isRecord(p string) bool {
	if !strings.HasPrefix(p, "roles/") {
		return true // manifest-level files: provenance, inputs
	}
	switch path.Base(p) {
	case "sbom.cdx.json", "cmdline.txt":
		return true
	}
	return false
}

// writeTar writes the members in index order. Headers carry nothing of
// this machine (owner 0, the lock's epoch as time), so a bundle of the same
// build is the same bytes. Each member is hashed again as it is copied: a
// file that changed since it was indexed fails the bundle.
func writeTar(ctx context.Context, out string, x *Index, idx, sig []byte, members []member, progress func(Progress)) error {
	// 0600 as ever: a bundle is handed on deliberately, not left readable.
	return durable.WriteFrom(out, 0o600, func(w io.Writer) error {
		if err := tarMembers(ctx, w, out, x, idx, sig, members, progress); err != nil {
			return err
		}
		// Checked last, as late as can be before the rename: a bundle never
		// replaces one that appeared meanwhile.
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("bundle %s appeared while writing; not replaced", out)
		}
		return nil
	})
}

func tarMembers(ctx context.Context, w io.Writer, out string, x *Index, idx, sig []byte, members []member, progress func(Progress)) error {
	mtime := time.Unix(x.Epoch, 0).UTC()
	tw := tar.NewWriter(w)
	hdr := func(name string, size, mode int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: mode, ModTime: mtime, Format: tar.FormatPAX}
	}
	for _, b := range []struct {
		name string
		data []byte
	}{{IndexName, idx}, {SigName, sig}} {
		if err := tw.WriteHeader(hdr(b.name, int64(len(b.data)), 0o644)); err != nil {
			return fmt.Errorf("bundle %s: %w", out, err)
		}
		if _, err := tw.Write(b.data); err != nil {
			return fmt.Errorf("bundle %s: %w", out, err)
		}
	}
	total, done := x.Size(), int64(0)
	for i, mb := range members {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := x.Files[i]
		if err := tw.WriteHeader(hdr(mb.name, want.Size, mb.mode)); err != nil {
			return fmt.Errorf("bundle %s: %w", out, err)
		}
		if err := copyMember(tw, mb.src, want); err != nil {
			return err
		}
		done += want.Size
		if progress != nil {
			progress(Progress{Done: done, Total: total, Path: mb.name})
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle %s: %w", out, err)
	}
	return nil
}

var errChanged = errors.New("changed while the bundle was written")

func copyMember(w io.Writer, src string, want manifest.FileEntry) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(f, want.Size+1))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return fmt.Errorf("%s: %w", src, errChanged)
	}
	return nil
}
