package sign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/efi"
)

// KeySet is a key directory as InitKeys wrote it: its public halves, loaded
// and cross-checked. Private keys are not held; read them when signing
// (ReadPrivateKey, ReadSigningKey) so they stay in memory no longer than
// needed.
type KeySet struct {
	Dir   string
	Owner efi.GUID // SignatureOwner of every entry in PK, KEK and db
	PK    *x509.Certificate
	KEK   *x509.Certificate
	DB    *x509.Certificate
	CA    *x509.Certificate
	Admin *x509.Certificate
	// SigningPub verifies manifests and the darksite repo (VerifyBlob).
	SigningPub ed25519.PublicKey
	// PCRPolicyPub verifies the PCR 11 policies a build signs (.pcrsig).
	PCRPolicyPub *rsa.PublicKey
	// Private reports whether the private halves are present (false for a
	// public-only copy made by ExportPublic).
	Private bool
}

// Path returns the absolute-or-relative path of one of the File* names.
func (ks *KeySet) Path(rel string) string { return filepath.Join(ks.Dir, filepath.FromSlash(rel)) }

// LoadKeySet reads a key directory back: every public file must be present
// and well formed, the signature lists must encode their certificates, and
// the private keys must be either all present and matching their public
// halves, or all absent (a public-only copy). Errors name the file.
func LoadKeySet(dir string) (*KeySet, error) {
	ks := &KeySet{Dir: dir}
	p := ks.Path
	raw, err := os.ReadFile(p(FileOwnerGUID))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	if ks.Owner, err = efi.Parse(strings.TrimSpace(string(raw))); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKeyFile, p(FileOwnerGUID), err)
	}
	for _, c := range []struct {
		dst              **x509.Certificate
		cert, esl, authF string
	}{
		{&ks.PK, FilePKCert, FilePKESL, FilePKAuth},
		{&ks.KEK, FileKEKCert, FileKEKESL, FileKEKAuth},
		{&ks.DB, FileDBCert, FileDBESL, FileDBAuth},
	} {
		if *c.dst, err = ReadCertificate(p(c.cert)); err != nil {
			return nil, err
		}
		if _, ok := (*c.dst).PublicKey.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("%w: %s: key is %T, firmware needs RSA", ErrBadKeyFile, p(c.cert), (*c.dst).PublicKey)
		}
		if err := checkESLAndAuth(p(c.esl), p(c.authF), X509SignatureList(ks.Owner, (*c.dst).Raw)); err != nil {
			return nil, err
		}
	}
	if ks.CA, err = ReadCertificate(p(FileCACert)); err != nil {
		return nil, err
	}
	if !ks.CA.IsCA {
		return nil, fmt.Errorf("%w: %s: not a CA certificate", ErrBadKeyFile, p(FileCACert))
	}
	if ks.Admin, err = ReadCertificate(p(FileAdminCert)); err != nil {
		return nil, err
	}
	if err := ks.Admin.CheckSignatureFrom(ks.CA); err != nil {
		return nil, fmt.Errorf("%w: %s: not issued by %s: %w", ErrBadKeyFile, p(FileAdminCert), p(FileCACert), err)
	}
	if ks.SigningPub, err = ReadVerifyKey(p(FileSigningPub)); err != nil {
		return nil, err
	}
	if ks.PCRPolicyPub, err = readPCRPolicyKey(p(FilePCRPolicyPub)); err != nil {
		return nil, err
	}
	if ks.Private, err = ks.checkPrivate(); err != nil {
		return nil, err
	}
	return ks, nil
}

// readPCRPolicyKey reads the PCR policy key's public half; a key directory
// from before it existed is told how to get one.
func readPCRPolicyKey(path string) (*rsa.PublicKey, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s missing: this key directory predates the PCR policy key; run `kubedos keys init --dir %s --add-pcr-policy` where its private keys are", ErrBadKeyFile, path, filepath.Dir(filepath.Dir(path)))
	}
	k, err := readPublicKey(path)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 || pub.E != 65537 {
		return nil, fmt.Errorf("%w: %s: want an RSA-2048 key with e=65537 (the TPM verifies it)", ErrBadKeyFile, path)
	}
	return pub, nil
}

// checkESLAndAuth checks the .esl file is exactly want and the .auth
// payload carries it (its signature is the firmware's to check).
func checkESLAndAuth(eslPath, authPath string, want []byte) error {
	esl, err := os.ReadFile(eslPath)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	if !bytes.Equal(esl, want) {
		return fmt.Errorf("%w: %s does not hold its certificate and owner GUID", ErrBadKeyFile, eslPath)
	}
	auth, err := os.ReadFile(authPath)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	if !bytes.HasSuffix(auth, want) || len(auth) <= len(want)+16+24 {
		return fmt.Errorf("%w: %s does not carry the signature list of %s", ErrBadKeyFile, authPath, eslPath)
	}
	return nil
}

// checkPrivate returns whether the private keys are there, failing if only
// some are or if one does not match its public half.
func (ks *KeySet) checkPrivate() (bool, error) {
	pubs := map[string]crypto.PublicKey{
		FilePKKey: ks.PK.PublicKey, FileKEKKey: ks.KEK.PublicKey, FileDBKey: ks.DB.PublicKey,
		FileSigningKey: ks.SigningPub, FilePCRPolicyKey: ks.PCRPolicyPub, FileCAKey: ks.CA.PublicKey, FileAdminKey: ks.Admin.PublicKey,
	}
	var present, missing []string
	for _, rel := range privateFiles {
		if _, err := os.Lstat(ks.Path(rel)); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, ks.Path(rel))
		} else {
			present = append(present, rel)
		}
	}
	if len(present) == 0 {
		return false, nil
	}
	if len(missing) > 0 {
		return false, fmt.Errorf("%w: %s missing while other private keys are present", ErrBadKeyFile, missing[0])
	}
	for _, rel := range present {
		k, err := ReadPrivateKey(ks.Path(rel))
		if err != nil {
			return false, err
		}
		pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(pubs[rel]) {
			return false, fmt.Errorf("%w: %s does not match its public half", ErrBadKeyFile, ks.Path(rel))
		}
	}
	return true, nil
}

// SigningKey reads the artifact signing key; it fails on a public-only copy.
func (ks *KeySet) SigningKey() (ed25519.PrivateKey, error) {
	return ReadSigningKey(ks.Path(FileSigningKey))
}

// ExportPublic copies the public halves (certificates, signature lists,
// .auth payloads, owner GUID, artifact public key) into dst with the same
// layout, for recovery bundles and the build. Private keys never leave. Like
// InitKeys it refuses to overwrite and stages the copy beside dst.
func (ks *KeySet) ExportPublic(dst string) (*KeySet, error) {
	if err := refuseExisting(dst, append(append([]string{}, privateFiles...), publicFiles...), keyDirs); err != nil {
		return nil, fmt.Errorf("export public keys: %w", err)
	}
	st, err := newStaging(dst)
	if err != nil {
		return nil, fmt.Errorf("export public keys: %w", err)
	}
	defer st.cleanup()
	for _, rel := range publicFiles {
		data, err := os.ReadFile(ks.Path(rel))
		if err != nil {
			return nil, fmt.Errorf("export public keys: %w", err)
		}
		if err := st.write(rel, data, 0o644); err != nil {
			return nil, fmt.Errorf("export public keys: %w", err)
		}
	}
	if err := st.commit(dst, keyDirs); err != nil {
		return nil, fmt.Errorf("export public keys: %w", err)
	}
	return LoadKeySet(dst)
}

// PCRPolicyKey reads the PCR policy key; it fails on a public-only copy.
func (ks *KeySet) PCRPolicyKey() (*rsa.PrivateKey, error) {
	k, err := ReadPrivateKey(ks.Path(FilePCRPolicyKey))
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok || !rk.PublicKey.Equal(ks.PCRPolicyPub) {
		return nil, fmt.Errorf("%w: %s is not the private half of %s", ErrBadKeyFile, ks.Path(FilePCRPolicyKey), ks.Path(FilePCRPolicyPub))
	}
	return rk, nil
}
