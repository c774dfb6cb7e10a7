package upgrade

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"debug/pe"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// Trust is what a node checks an upgrade against; both come from the image.
type Trust struct {
	Artifact ed25519.PublicKey
	DB       []*x509.Certificate
}

// LoadTrust reads the public keys the build put in the image.
func LoadTrust(artifactPub, dbCert string) (Trust, error) {
	pub, err := sign.ReadVerifyKey(artifactPub)
	if err != nil {
		return Trust{}, err
	}
	db, err := sign.ReadCertificate(dbCert)
	if err != nil {
		return Trust{}, err
	}
	return Trust{Artifact: pub, DB: []*x509.Certificate{db}}, nil
}

// Booted is what the node runs now.
type Booted struct {
	Role, Build, Slot, RootHash string
}

// Payload file names, as the client sends them.
const (
	PartRoot   = manifest.FileRoot
	PartVerity = manifest.FileVerity
	PartUKI    = manifest.FileUKI
)

// Parts is the order a client sends the payload in.
var Parts = []string{PartRoot, PartVerity, PartUKI}

// ErrRefused marks a payload the node will not install; the message says
// why. Its class is a failed precondition: the node is not in a state (or
// the payload not of a build) that allows the upgrade.
var ErrRefused = errdefs.New(errdefs.ErrPrecondition, "upgrade refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Stager receives one upgrade payload into a spool directory in memory
// (tmpfs), hashing as it goes.
type Stager struct {
	Manifest *manifest.Manifest
	Role     manifest.RoleManifest
	dir      string
	want     map[string]manifest.FileEntry
	files    map[string]*spoolFile
	trust    Trust
}

type spoolFile struct {
	f    *os.File
	h    hash.Hash
	size int64
}

// Begin checks the manifest and its signature and opens the spool.
func Begin(trust Trust, booted Booted, manifestRaw, signature []byte, spoolDir string) (*Stager, error) {
	if err := sign.VerifyBlob(trust.Artifact, manifestRaw, signature); err != nil {
		return nil, refuse("manifest signature: %v", err)
	}
	m, err := manifest.Parse(manifestRaw)
	if err != nil {
		return nil, refuse("manifest: %v", err)
	}
	rm, ok := m.Roles[booted.Role]
	if !ok {
		return nil, refuse("build %s has no image for role %s", m.BuildID, booted.Role)
	}
	if rm.RoleID == booted.Build {
		return nil, refuse("the node already runs build %s (role %s of build %s)", booted.Build, booted.Role, m.BuildID)
	}
	want := map[string]manifest.FileEntry{}
	for _, p := range Parts {
		fe, ok := m.File(manifest.RoleFile(booted.Role, p))
		if !ok {
			return nil, refuse("manifest of build %s lists no %s", m.BuildID, manifest.RoleFile(booted.Role, p))
		}
		want[p] = fe
	}
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(spoolDir, "upgrade-")
	if err != nil {
		return nil, err
	}
	return &Stager{Manifest: m, Role: rm, dir: dir, want: want, files: map[string]*spoolFile{}, trust: trust}, nil
}

// Write appends a chunk of one payload file. A file the manifest does not
// list, or more bytes than it says, is refused at once.
func (s *Stager) Write(name string, chunk []byte) error {
	fe, ok := s.want[name]
	if !ok {
		return refuse("payload file %q is not one of %s", name, strings.Join(Parts, ", "))
	}
	sf := s.files[name]
	if sf == nil {
		f, err := os.Create(filepath.Join(s.dir, name))
		if err != nil {
			return err
		}
		sf = &spoolFile{f: f, h: sha256.New()}
		s.files[name] = sf
	}
	if sf.size+int64(len(chunk)) > fe.Size {
		return refuse("%s: more than the %d bytes the manifest lists", name, fe.Size)
	}
	if _, err := sf.f.Write(chunk); err != nil {
		return fmt.Errorf("spool %s: %w", name, err)
	}
	sf.h.Write(chunk)
	sf.size += int64(len(chunk))
	return nil
}

// Staged is a payload that passed every check, ready to install.
type Staged struct {
	Manifest *manifest.Manifest
	Role     manifest.RoleManifest
	Files    map[string]string // part name → spooled file
	dir      string
}

// Finish checks sizes, digests, the UKI's signature and its cmdline.
func (s *Stager) Finish() (*Staged, error) {
	for _, name := range Parts {
		fe, sf := s.want[name], s.files[name]
		if sf == nil {
			return nil, refuse("%s was not sent", name)
		}
		if err := sf.f.Close(); err != nil {
			return nil, err
		}
		if sf.size != fe.Size {
			return nil, refuse("%s: %d bytes, the manifest lists %d", name, sf.size, fe.Size)
		}
		if got := hex.EncodeToString(sf.h.Sum(nil)); got != fe.SHA256 {
			return nil, refuse("%s: sha256 %s, the signed manifest lists %s", name, got, fe.SHA256)
		}
	}
	uki := filepath.Join(s.dir, PartUKI)
	raw, err := os.ReadFile(uki)
	if err != nil {
		return nil, err
	}
	if err := sign.VerifyPE(raw, s.trust.DB); err != nil {
		return nil, refuse("UKI signature: %v", err)
	}
	cmdline, err := UKICmdline(uki)
	if err != nil {
		return nil, refuse("UKI: %v", err)
	}
	if !manifest.HasRootHash(cmdline, s.Role.RootHash) {
		return nil, refuse("UKI cmdline does not name the manifest's root hash %s", s.Role.RootHash)
	}
	files := map[string]string{}
	for _, p := range Parts {
		files[p] = filepath.Join(s.dir, p)
	}
	return &Staged{Manifest: s.Manifest, Role: s.Role, Files: files, dir: s.dir}, nil
}

// Abort drops the spool.
func (s *Stager) Abort() {
	for _, sf := range s.files {
		_ = sf.f.Close()
	}
	_ = os.RemoveAll(s.dir)
}

// Remove drops a staged payload's spool.
func (st *Staged) Remove() { _ = os.RemoveAll(st.dir) }

// UKICmdline reads the .cmdline section of a UKI.
func UKICmdline(path string) (string, error) {
	f, err := pe.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s is not a PE image: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".cmdline")
	if sec == nil {
		return "", fmt.Errorf("%s has no .cmdline section", path)
	}
	b, err := io.ReadAll(io.LimitReader(sec.Open(), 64<<10))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > int64(sec.VirtualSize) && sec.VirtualSize > 0 {
		b = b[:sec.VirtualSize] // the raw size is padded to the file alignment
	}
	return strings.TrimRight(string(b), "\x00\n "), nil
}
