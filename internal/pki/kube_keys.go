package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
)

// Files of the Kubernetes keys inside a key directory (InitKubeKeys). The
// .key files are private (0600, in a 0700 directory) and never leave the key
// directory except, sealed, to the hub a master takes over.
const (
	KubeDir              = "kubernetes"
	KubeCACertFile       = "kubernetes/ca.crt"
	KubeCAKeyFile        = "kubernetes/ca.key"
	EtcdCACertFile       = "kubernetes/etcd-ca.crt"
	EtcdCAKeyFile        = "kubernetes/etcd-ca.key"
	FrontProxyCACertFile = "kubernetes/front-proxy-ca.crt"
	FrontProxyCAKeyFile  = "kubernetes/front-proxy-ca.key"
	SAKeyFile            = "kubernetes/sa.key"
	SAPubFile            = "kubernetes/sa.pub"
)

// KubeCAValidity is the life of the Kubernetes CAs: rotated by hand, like
// the cluster CA.
const KubeCAValidity = 10 * 365 * 24 * time.Hour

// KubePrivateFiles and KubePublicFiles are the files InitKubeKeys writes.
var (
	KubePrivateFiles = []string{KubeCAKeyFile, EtcdCAKeyFile, FrontProxyCAKeyFile, SAKeyFile}
	KubePublicFiles  = []string{KubeCACertFile, EtcdCACertFile, FrontProxyCACertFile, SAPubFile}
)

// KubeCAs are the Kubernetes authorities the hub holds: the cluster CA of
// Kubernetes (apiserver, kubelets, controllers), the etcd CA, the
// front-proxy CA, and the service-account signing key.
type KubeCAs struct {
	Kubernetes, Etcd, FrontProxy *CA
	// ServiceAccount signs service-account tokens (kube-apiserver
	// --service-account-signing-key-file, controller-manager
	// --service-account-private-key-file).
	ServiceAccount crypto.Signer
	// SAKeyPEM and SAPubPEM are its PKCS #8 and PKIX PEM forms.
	SAKeyPEM, SAPubPEM []byte
}

// InitKubeKeys makes the Kubernetes CAs and the service-account key under
// keysDir/kubernetes. It never overwrites: if any of the files exists it
// fails naming it and writes nothing new.
func InitKubeKeys(keysDir, cluster string, now time.Time) (*KubeCAs, error) {
	for _, rel := range append(append([]string{}, KubePrivateFiles...), KubePublicFiles...) {
		p := filepath.Join(keysDir, filepath.FromSlash(rel))
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("kubernetes keys: %s already exists; keys are never overwritten", p)
		}
	}
	if cluster == "" || len(cluster) > 64 {
		return nil, fmt.Errorf("%w: cluster name %q must be 1 to 64 bytes", ErrInvalid, cluster)
	}
	now = now.UTC().Truncate(time.Second)
	files := map[string][]byte{}
	for _, ca := range []struct{ cn, certF, keyF string }{
		{"kubernetes", KubeCACertFile, KubeCAKeyFile},
		{"etcd-ca", EtcdCACertFile, EtcdCAKeyFile},
		{"front-proxy-ca", FrontProxyCACertFile, FrontProxyCAKeyFile},
	} {
		certPEM, keyPEM, err := newKubeCA(fmt.Sprintf("%s (kubedos %s)", ca.cn, cluster), now)
		if err != nil {
			return nil, fmt.Errorf("kubernetes keys: %s: %w", ca.certF, err)
		}
		files[ca.certF], files[ca.keyF] = certPEM, keyPEM
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("kubernetes keys: service-account key: %w", err)
	}
	if files[SAKeyFile], files[SAPubFile], err = encodeKeyPair(sa); err != nil {
		return nil, fmt.Errorf("kubernetes keys: service-account key: %w", err)
	}
	cas, err := ParseKubeFiles(files)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(keysDir, KubeDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kubernetes keys: %w", err)
	}
	for _, rel := range append(append([]string{}, KubePublicFiles...), KubePrivateFiles...) {
		mode := os.FileMode(0o644)
		if isKubePrivate(rel) {
			mode = 0o600
		}
		if err := durable.CreateFile(filepath.Join(keysDir, filepath.FromSlash(rel)), files[rel], mode); err != nil {
			return nil, fmt.Errorf("kubernetes keys: %w", err)
		}
	}
	if err := durable.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("kubernetes keys: %w", err)
	}
	return cas, nil
}

func isKubePrivate(rel string) bool {
	for _, p := range KubePrivateFiles {
		if p == rel {
			return true
		}
	}
	return false
}

// HasKubeKeys reports whether keysDir holds the Kubernetes keys (at least
// the Kubernetes CA certificate; LoadKubeCAs then checks them all). A key
// directory made before the Kubernetes half of the ceremony has none: the
// hub it runs issues no Kubernetes certificates.
func HasKubeKeys(keysDir string) bool {
	_, err := os.Stat(filepath.Join(keysDir, filepath.FromSlash(KubeCACertFile)))
	return !errors.Is(err, fs.ErrNotExist)
}

// ReadKubeFiles reads every Kubernetes key file of keysDir (private ones
// included: for the hub only). A missing file is an error naming it.
func ReadKubeFiles(keysDir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, rel := range append(append([]string{}, KubePublicFiles...), KubePrivateFiles...) {
		b, err := os.ReadFile(filepath.Join(keysDir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("%w: kubernetes keys: %w (run `kubedos keys init --add-kubernetes`)", ErrBadCA, err)
		}
		files[rel] = b
	}
	return files, nil
}

// LoadKubeCAs reads and checks the Kubernetes keys of keysDir.
func LoadKubeCAs(keysDir string) (*KubeCAs, error) {
	files, err := ReadKubeFiles(keysDir)
	if err != nil {
		return nil, err
	}
	return ParseKubeFiles(files)
}

// ParseKubeFiles checks a set of Kubernetes key files (relative name →
// content, as ReadKubeFiles returns and a hub handoff carries): every file
// present, each CA key matching its certificate, the service-account pair
// matching. Errors wrap ErrBadCA and name the file.
func ParseKubeFiles(files map[string][]byte) (*KubeCAs, error) {
	var out KubeCAs
	for _, c := range []struct {
		dst         **CA
		certF, keyF string
	}{
		{&out.Kubernetes, KubeCACertFile, KubeCAKeyFile},
		{&out.Etcd, EtcdCACertFile, EtcdCAKeyFile},
		{&out.FrontProxy, FrontProxyCACertFile, FrontProxyCAKeyFile},
	} {
		der, err := pemBlock(files, c.certF, "CERTIFICATE")
		if err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, c.certF, err)
		}
		key, err := parseSigner(files, c.keyF)
		if err != nil {
			return nil, err
		}
		if *c.dst, err = NewCA(cert, key); err != nil {
			return nil, fmt.Errorf("%s: %w", c.keyF, err)
		}
	}
	key, err := parseSigner(files, SAKeyFile)
	if err != nil {
		return nil, err
	}
	der, err := pemBlock(files, SAPubFile, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, SAPubFile, err)
	}
	if eq, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
		return nil, fmt.Errorf("%w: %s does not match %s", ErrBadCA, SAKeyFile, SAPubFile)
	}
	out.ServiceAccount, out.SAKeyPEM, out.SAPubPEM = key, files[SAKeyFile], files[SAPubFile]
	return &out, nil
}

func pemBlock(files map[string][]byte, rel, typ string) ([]byte, error) {
	raw, ok := files[rel]
	if !ok {
		return nil, fmt.Errorf("%w: %s missing", ErrBadCA, rel)
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != typ {
		return nil, fmt.Errorf("%w: %s: not a PEM %s", ErrBadCA, rel, typ)
	}
	return b.Bytes, nil
}

func parseSigner(files map[string][]byte, rel string) (crypto.Signer, error) {
	der, err := pemBlock(files, rel, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: does not parse as PKCS #8", ErrBadCA, rel) // no key bytes in the error
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s: key type %T cannot sign", ErrBadCA, rel, k)
	}
	return s, nil
}

// newKubeCA makes a self-signed ECDSA P-256 CA (path length 0: leaves only).
func newKubeCA(cn string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(KubeCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, _, err = encodeKeyPair(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func encodeKeyPair(key crypto.Signer) (keyPEM, pubPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}
