package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// ErrBad wraps every way a bundle can fail its checks.
var ErrBad = errors.New("bundle refused")

// Verify reads the bundle at p once and checks it whole: the index's
// signature by pub, then every member's presence, size and sha256. Every
// bad member is named in the error, not only the first.
func Verify(ctx context.Context, p string, pub ed25519.PublicKey) (*Index, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	x, err := read(ctx, f, pub, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return x, nil
}

// Extract checks the bundle at p as Verify does while unpacking it into
// dir, which must not exist. It is unpacked beside dir and renamed into
// place only when every check passed: a refused bundle leaves nothing.
func Extract(ctx context.Context, p, dir string, pub ed25519.PublicKey) (*Index, error) {
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("%s exists; extract into a new directory", dir)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // gone already once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	x, err := read(ctx, f, pub, func(name string, mode int64) (io.WriteCloser, error) {
		dst := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		perm := os.FileMode(0o644)
		if mode&0o111 != 0 {
			perm = 0o755
		}
		return os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return x, durable.PublishDir(tmp, dir)
}

// read walks the tar: index, signature, then the members. open, when not
// nil, receives each member's bytes; a member is checked as it streams.
func read(ctx context.Context, r io.Reader, pub ed25519.PublicKey, open func(name string, mode int64) (io.WriteCloser, error)) (*Index, error) {
	tr := tar.NewReader(r)
	idx, err := head(tr, IndexName, MaxIndexBytes)
	if err != nil {
		return nil, err
	}
	sig, err := head(tr, SigName, maxSigBytes)
	if err != nil {
		return nil, err
	}
	if err := sign.VerifyBlob(pub, idx, sig); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBad, SigName, err)
	}
	x, err := parseIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBad, err)
	}
	if want := sign.KeyID(pub); x.SigningKey != want {
		return nil, fmt.Errorf("%w: %s: signingKey %q, but it is signed by %s", ErrBad, IndexName, x.SigningKey, want)
	}
	want := make(map[string]int, len(x.Files))
	for i, f := range x.Files {
		want[f.Path] = i
	}
	seen := make(map[string]bool, len(x.Files))
	var problems []string
	// The acceptance record and its signature are kept as they stream, to
	// check the record's own signature once every member is read.
	recName := path.Join(DirBuild, x.BuildID, manifest.AcceptanceFile)
	sigName := path.Join(DirBuild, x.BuildID, manifest.AcceptanceSigFile)
	anchors := map[string]*bytes.Buffer{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: not a readable tar after %d members: %w", ErrBad, len(seen), err)
		}
		i, listed := want[h.Name]
		switch {
		case h.Typeflag != tar.TypeReg:
			problems = append(problems, fmt.Sprintf("%s: a %s, not a regular file", h.Name, typeName(h.Typeflag)))
			seen[h.Name] = true // reported: not "missing" as well
			continue
		case !listed:
			problems = append(problems, fmt.Sprintf("%s: not in the signed index", h.Name))
			continue
		case seen[h.Name]:
			problems = append(problems, fmt.Sprintf("%s: appears twice", h.Name))
			continue
		}
		seen[h.Name] = true
		f := x.Files[i]
		if h.Size != f.Size {
			problems = append(problems, fmt.Sprintf("%s: %d bytes, the signed index lists %d", h.Name, h.Size, f.Size))
			continue
		}
		var w io.Writer = io.Discard
		if h.Name == recName || h.Name == sigName {
			if f.Size > manifest.MaxAcceptanceBytes {
				problems = append(problems, fmt.Sprintf("%s: %d bytes, more than %d", h.Name, f.Size, manifest.MaxAcceptanceBytes))
				continue
			}
			anchors[h.Name] = &bytes.Buffer{}
			w = anchors[h.Name]
		}
		var wc io.WriteCloser
		if open != nil {
			if wc, err = open(h.Name, h.Mode); err != nil {
				return nil, fmt.Errorf("extract %s: %w", h.Name, err)
			}
			w = io.MultiWriter(w, wc)
		}
		sum := sha256.New()
		_, err = io.Copy(io.MultiWriter(w, sum), tr)
		if wc != nil {
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBad, h.Name, err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != f.SHA256 {
			problems = append(problems, fmt.Sprintf("%s: sha256 %s, the signed index lists %s", h.Name, got, f.SHA256))
		}
	}
	for _, f := range x.Files {
		if !seen[f.Path] {
			problems = append(problems, fmt.Sprintf("%s: missing", f.Path))
		}
	}
	_, hasRec := want[recName]
	_, hasSig := want[sigName]
	switch {
	case hasRec != hasSig:
		problems = append(problems, fmt.Sprintf("%s: the acceptance record and its signature %s come together", recName, manifest.AcceptanceSigFile))
	case hasRec && anchors[recName] != nil && anchors[sigName] != nil:
		a, err := checkAcceptance(pub, anchors[recName].Bytes(), anchors[sigName].Bytes(), x.Cluster, x.BuildID)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", recName, err))
		}
		x.Acceptance = a
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %d bad member(s):\n  %s", ErrBad, len(problems), strings.Join(problems, "\n  "))
	}
	return x, nil
}

// head reads one of the two leading members, which must come first and in
// order, bounded before anything is trusted.
func head(tr *tar.Reader, name string, max int64) ([]byte, error) {
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%w: not a kubedos recovery bundle (no %s): %w", ErrBad, name, err)
	}
	if h.Name != name || h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: not a kubedos recovery bundle: member %q where %s belongs", ErrBad, h.Name, name)
	}
	if h.Size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrBad, name, h.Size, max)
	}
	return io.ReadAll(io.LimitReader(tr, max))
}

func typeName(t byte) string {
	switch t {
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	}
	return fmt.Sprintf("tar type %q", t)
}

// RebuildPaths are where an extracted bundle's inputs are, for kubedos build.
func RebuildPaths(dir string) (spec, repo, bins string) {
	return filepath.Join(dir, DirInputs, path.Base(manifest.SpecFile)), filepath.Join(dir, DirRepo), filepath.Join(dir, DirBin)
}
