package sign

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unicode"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/efi"
)

// InitOptions parameterise the key ceremony.
type InitOptions struct {
	// Cluster names the keys: "kubedos <Cluster> PK", "kubedos <Cluster> CA".
	Cluster string
	// Now is the ceremony's time: certificates start an hour before it and
	// the .auth payloads carry it as their timestamp. Zero means time.Now.
	Now time.Time
}

func (o InitOptions) validate() error {
	if o.Cluster == "" {
		return fmt.Errorf("cluster name is empty; it names the keys")
	}
	if len(o.Cluster) > 64 {
		return fmt.Errorf("cluster name %q is longer than 64 bytes", o.Cluster)
	}
	for _, r := range o.Cluster {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("cluster name %q has a non-printable character %U", o.Cluster, r)
		}
	}
	return nil
}

// InitKeys runs the key ceremony: it makes the platform's Secure Boot PK,
// KEK and db (certificates, signature lists and enrolment payloads), the
// ed25519 artifact signing key, the cluster CA and an admin client
// certificate, and writes them under dir (layout in files.go). It never
// overwrites: if any of those files already exists it fails naming it and
// writes nothing. Everything is staged in a temporary directory beside dir
// and moved into place at the end.
func InitKeys(ctx context.Context, dir string, opts InitOptions) (*KeySet, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	if err := refuseExisting(dir, append(append([]string{}, privateFiles...), publicFiles...), keyDirs); err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)

	files, err := generate(ctx, opts.Cluster, now)
	if err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	st, err := newStaging(dir)
	if err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	defer st.cleanup()
	for _, f := range files {
		if err := st.write(f.rel, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("key ceremony: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	if err := st.commit(dir, keyDirs); err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	return LoadKeySet(dir)
}

type keyFile struct {
	rel  string
	data []byte
	mode os.FileMode
}

// generate makes every key and derived file in memory.
func generate(ctx context.Context, cluster string, now time.Time) ([]keyFile, error) {
	var files []keyFile
	add := func(rel string, data []byte, private bool) {
		mode := os.FileMode(0o644)
		if private {
			mode = 0o600
		}
		files = append(files, keyFile{rel, data, mode})
	}
	owner, err := efi.New()
	if err != nil {
		return nil, err
	}
	add(FileOwnerGUID, []byte(owner.String()+"\n"), false)

	sb := map[string]issued{}
	for _, role := range []string{"PK", "KEK", "db"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if sb[role], err = newSecureBootCert(cluster, role, now); err != nil {
			return nil, err
		}
	}
	// Who signs each variable: PK enrols itself (allowed in setup mode) and
	// KEK; KEK signs db, as the UEFI authority rules require.
	vars := []struct {
		role, keyF, certF, eslF, authF, signer string
		vendor                                 efi.GUID
	}{
		{"PK", FilePKKey, FilePKCert, FilePKESL, FilePKAuth, "PK", efi.GlobalVariable},
		{"KEK", FileKEKKey, FileKEKCert, FileKEKESL, FileKEKAuth, "PK", efi.GlobalVariable},
		{"db", FileDBKey, FileDBCert, FileDBESL, FileDBAuth, "KEK", efi.ImageSecurityDatabase},
	}
	for _, v := range vars {
		is := sb[v.role]
		keyPEM, err := encodeKeyPEM(is.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.keyF, err)
		}
		esl := X509SignatureList(owner, is.cert.Raw)
		signer := sb[v.signer]
		auth, err := SignedVariable(v.role, v.vendor, SecureBootVarAttrs, now, esl, signer.cert, signer.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.authF, err)
		}
		add(v.keyF, keyPEM, true)
		add(v.certF, encodeCertPEM(is.cert), false)
		add(v.eslF, esl, false)
		add(v.authF, auth, false)
	}

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate artifact signing key: %w", err)
	}
	privPEM, err := encodeKeyPEM(priv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FileSigningKey, err)
	}
	pubPEM, err := encodePublicPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FileSigningPub, err)
	}
	add(FileSigningKey, privPEM, true)
	add(FileSigningPub, pubPEM, false)

	pcrKey, pcrPub, err := newPCRPolicyKey()
	if err != nil {
		return nil, err
	}
	add(FilePCRPolicyKey, pcrKey, true)
	add(FilePCRPolicyPub, pcrPub, false)

	ca, err := newClusterCA(cluster, now)
	if err != nil {
		return nil, err
	}
	admin, err := newClientCert(ca, "admin", "admin", now)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		keyF, certF string
		is          issued
	}{{FileCAKey, FileCACert, ca}, {FileAdminKey, FileAdminCert, admin}} {
		keyPEM, err := encodeKeyPEM(c.is.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.keyF, err)
		}
		add(c.keyF, keyPEM, true)
		add(c.certF, encodeCertPEM(c.is.cert), false)
	}
	return files, nil
}

// newPCRPolicyKey makes the PCR policy key and returns its private and
// public PEM.
func newPCRPolicyKey() (priv, pub []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate PCR policy key: %w", err)
	}
	if priv, err = encodeKeyPEM(key); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", FilePCRPolicyKey, err)
	}
	if pub, err = encodePublicPEM(&key.PublicKey); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", FilePCRPolicyPub, err)
	}
	return priv, pub, nil
}

// AddPCRPolicyKey gives a key directory made before the PCR policy key
// existed its PCR policy key, and nothing else. It refuses a directory that
// has one (or half of one) and a public-only copy.
func AddPCRPolicyKey(dir string) (*KeySet, error) {
	for _, rel := range []string{FilePCRPolicyKey, FilePCRPolicyPub} {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); err == nil {
			return nil, fmt.Errorf("%w: %s exists: the PCR policy key is never overwritten", ErrBadKeyFile, filepath.Join(dir, filepath.FromSlash(rel)))
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(FileSigningKey))); err != nil {
		return nil, fmt.Errorf("%w: %s: add the PCR policy key where the private keys are: %w", ErrBadKeyFile, dir, err)
	}
	priv, pub, err := newPCRPolicyKey()
	if err != nil {
		return nil, err
	}
	// The private half first: a crash between the two leaves a key with no
	// public half, which LoadKeySet names, never a public half with no key.
	if err := durable.WriteFile(filepath.Join(dir, filepath.FromSlash(FilePCRPolicyKey)), priv, 0o600); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(filepath.Join(dir, filepath.FromSlash(FilePCRPolicyPub)), pub, 0o644); err != nil {
		return nil, err
	}
	return LoadKeySet(dir)
}
