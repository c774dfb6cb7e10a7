package build

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"debug/pe"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/sparse"
	"github.com/kubedos/kubedos/internal/tpmseal"
)

// Failure is one thing wrong with a build, naming the file.
type Failure struct {
	File    string `json:"file"`
	Problem string `json:"problem"`
}

// Verify checks a build directory offline against the platform's public
// keys: the manifest signature, every file's digest, the Authenticode
// signatures of both EFI binaries against db, each verity root hash against
// its root image, and each SBOM against the lock. It returns every failure;
// err is only for a build it cannot read at all.
func Verify(ctx context.Context, dir string, keys *sign.KeySet) ([]Failure, error) {
	var fails []Failure
	fail := func(file, format string, args ...any) {
		fails = append(fails, Failure{File: file, Problem: fmt.Sprintf(format, args...)})
	}
	m, raw, err := manifest.Read(filepath.Join(dir, manifest.ManifestFile))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, manifest.SignatureFile))
	if err != nil {
		fail(manifest.SignatureFile, "missing: %v", err)
	} else if err := sign.VerifyBlob(keys.SigningPub, raw, sig); err != nil {
		fail(manifest.SignatureFile, "manifest signature does not verify with %s: %v", keys.Path(sign.FileSigningPub), err)
	}
	if m.DBCert != sha256Hex(keys.DB.Raw) {
		fail(manifest.ManifestFile, "built for db certificate %s, not %s", m.DBCert, keys.Path(sign.FileDBCert))
	}
	if m.PCRPolicyKey != tpmseal.Fingerprint(keys.PCRPolicyPub) {
		fail(manifest.ManifestFile, "built for PCR policy key %s, not %s", m.PCRPolicyKey, keys.Path(sign.FilePCRPolicyPub))
	}
	listed := map[string]bool{manifest.ManifestFile: true, manifest.SignatureFile: true}
	for _, f := range m.Files {
		listed[f.Path] = true
		sum, size, err := sparse.Digest(filepath.Join(dir, f.Path))
		switch {
		case err != nil:
			fail(f.Path, "unreadable: %v", err)
		case size != f.Size || sum != f.SHA256:
			fail(f.Path, "sha256 %s (%d bytes), manifest says %s (%d bytes)", sum, size, f.SHA256, f.Size)
		}
	}
	present, err := listFiles(dir, nil)
	if err != nil {
		return nil, err
	}
	for _, f := range present {
		if !listed[f.Path] {
			fail(f.Path, "not in the manifest")
		}
	}
	l, lerr := lock.Read(filepath.Join(dir, manifest.LockFile))
	if lerr != nil {
		fail(manifest.LockFile, "%v", lerr)
	}
	roles := make([]string, 0, len(m.Roles))
	for r := range m.Roles {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		rm := m.Roles[r]
		rel := func(f string) string { return filepath.ToSlash(filepath.Join("roles", r, f)) }
		for _, efi := range []string{FileUKI, FileBootEFI} {
			if err := verifyPEFile(filepath.Join(dir, rel(efi)), []*x509.Certificate{keys.DB}); err != nil {
				fail(rel(efi), "Authenticode: %v", err)
			}
		}
		if pred, err := Predict(filepath.Join(dir, "roles", r), keys); err != nil {
			fail(rel(FileUKI), "cannot predict PCRs: %v", err)
		} else if got, err := json.Marshal(pred); err != nil || !sameJSON(got, rm.PCRs) {
			fail(manifest.ManifestFile, "role %s: the PCR prediction does not follow from the built EFI binaries and keys", r)
		}
		if err := checkPCRSig(filepath.Join(dir, rel(FileUKI)), keys.PCRPolicyPub); err != nil {
			fail(rel(FileUKI), "signed PCR 11 policy: %v", err)
		}
		if err := CheckVerity(ctx, filepath.Join(dir, rel(FileRoot)), filepath.Join(dir, rel(FileVerity)), rm.RootHash); err != nil {
			fail(rel(FileRoot), "dm-verity root hash %s does not match: %v", rm.RootHash, err)
		}
		if lerr == nil {
			for _, p := range checkSBOM(filepath.Join(dir, rel(FileSBOM)), l) {
				fail(rel(FileSBOM), "%s", p)
			}
		}
	}
	return fails, nil
}

// checkPCRSig checks a UKI's .pcrsig: signed by the PCR policy key, exactly
// one entry per boot phase, each approving the PCR 11 value this UKI's
// measured sections give at that phase, and its .pcrpkey is that key.
func checkPCRSig(uki string, pub *rsa.PublicKey) error {
	f, err := pe.Open(uki)
	if err != nil {
		return err
	}
	defer f.Close()
	section := func(name string) ([]byte, error) {
		s := f.Section(name)
		if s == nil {
			return nil, fmt.Errorf("no %s section", name)
		}
		b, err := s.Data()
		if err != nil {
			return nil, err
		}
		return b[:min(uint32(len(b)), s.VirtualSize)], nil
	}
	pkey, err := section(".pcrpkey")
	if err != nil {
		return err
	}
	if k, err := tpmseal.PublicKey(pkey); err != nil || !k.Equal(pub) {
		return fmt.Errorf(".pcrpkey is not the PCR policy key %.16s…", tpmseal.Fingerprint(pub))
	}
	raw, err := section(".pcrsig")
	if err != nil {
		return err
	}
	sigs, err := tpmseal.ParseSignatures(bytes.TrimRight(raw, "\x00"))
	if err != nil {
		return err
	}
	pols, err := sigs.Verify(pub)
	if err != nil {
		return err
	}
	values, err := PCR11Values(uki)
	if err != nil {
		return err
	}
	if len(pols) != len(values) {
		return fmt.Errorf("%d signed values, want %d (one per boot phase)", len(pols), len(values))
	}
	for i, v := range values {
		want, err := tpmseal.PCRPolicy(tpmseal.PCRKernelImage, v)
		if err != nil {
			return err
		}
		if !bytes.Equal(pols[i], want) {
			return fmt.Errorf("entry %d approves another PCR 11 than this UKI's at phase %s", i, measure.BootPhases[i].Name)
		}
	}
	return nil
}

func verifyPEFile(path string, roots []*x509.Certificate) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return sign.VerifyPE(b, roots)
}

// checkSBOM compares every Debian component of an SBOM with the lock: same
// version and .deb digest. The kube binary and its Go modules are pinned
// by their own digests (isKubeComponent).
func checkSBOM(path string, l *lock.Lock) []string {
	bom, err := ReadSBOM(path)
	if err != nil {
		return []string{err.Error()}
	}
	if bom.Components == nil || len(*bom.Components) == 0 {
		return []string{"no components"}
	}
	var probs []string
	for _, c := range *bom.Components {
		if kube, prob := isKubeComponent(c); kube {
			if prob != "" {
				probs = append(probs, prob)
			}
			continue
		}
		p, ok := l.Package(c.Name)
		switch {
		case !ok:
			probs = append(probs, fmt.Sprintf("component %s is not in the lock", c.Name))
		case p.Version != c.Version:
			probs = append(probs, fmt.Sprintf("component %s version %s, lock has %s", c.Name, c.Version, p.Version))
		case c.Hashes == nil || len(*c.Hashes) == 0 || (*c.Hashes)[0].Value != p.SHA256:
			probs = append(probs, fmt.Sprintf("component %s digest differs from the lock", c.Name))
		}
	}
	return probs
}

// sameJSON compares two JSON documents ignoring layout (the manifest is indented).
func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}
