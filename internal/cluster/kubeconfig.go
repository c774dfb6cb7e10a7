package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/kube"
	"google.golang.org/grpc"
)

// KubeconfigWritten is what WriteAdminKubeconfig wrote: never the key.
type KubeconfigWritten struct {
	Path     string    `json:"path"`
	Server   string    `json:"server"`
	User     string    `json:"user"`
	NotAfter time.Time `json:"notAfter"`
}

// WriteAdminKubeconfig writes to path (0600, through internal/durable) a
// kubeconfig for cluster with an admin credential the hub at addr issues
// the operator a names: the key is made here, in memory, and written only
// into the kubeconfig; the hub sees its CSR. path is not overwritten
// unless force; that is checked before the hub is asked, so a refusal
// costs no credential.
func (a Access) WriteAdminKubeconfig(ctx context.Context, addr, cluster, path string, force bool) (KubeconfigWritten, error) {
	if !force {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			if err == nil {
				return KubeconfigWritten{}, fmt.Errorf("%w: %s exists: not overwritten (--force replaces it)", errdefs.ErrAlreadyExists, path)
			}
			return KubeconfigWritten{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	creds, user, notAfter, err := a.AdminKubeCredentials(ctx, addr)
	if err != nil {
		return KubeconfigWritten{}, err
	}
	data, err := kube.Kubeconfig(cluster, user, creds)
	if err != nil {
		return KubeconfigWritten{}, err
	}
	if err := durable.WriteFile(path, data, 0o600); err != nil {
		return KubeconfigWritten{}, err
	}
	return KubeconfigWritten{Path: path, Server: creds.Server, User: user, NotAfter: notAfter}, nil
}

// AdminKubeCredentials asks the hub at addr for a short-lived admin
// Kubernetes credential for the operator a names, for a key made here in
// memory: the credentials, the Kubernetes user and when it expires.
func (a Access) AdminKubeCredentials(ctx context.Context, addr string) (kube.Credentials, string, time.Time, error) {
	cc, err := a.Conn(addr, api.HubServerName)
	if err != nil {
		return kube.Credentials{}, "", time.Time{}, err
	}
	defer cc.Close()
	return adminKubeCredentials(ctx, cc)
}

// adminKubeCredentials is AdminKubeCredentials over a hub connection made
// with an admin operator's certificate.
func adminKubeCredentials(ctx context.Context, cc grpc.ClientConnInterface) (kube.Credentials, string, time.Time, error) {
	var none kube.Credentials
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return none, "", time.Time{}, fmt.Errorf("admin kubeconfig key: %w", err)
	}
	// The hub sets the subject: the CSR carries only the key.
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return none, "", time.Time{}, fmt.Errorf("admin kubeconfig CSR: %w", err)
	}
	res, err := api.NewKubeCertsClient(cc).Admin(ctx, csr)
	if err != nil {
		return none, "", time.Time{}, err
	}
	cert, err := x509.ParseCertificate(res.Certificate)
	if err != nil {
		return none, "", time.Time{}, fmt.Errorf("%w: the hub's certificate: %w", errdefs.ErrInternal, err)
	}
	ca, err := x509.ParseCertificate(res.KubernetesCA)
	if err != nil {
		return none, "", time.Time{}, fmt.Errorf("%w: the hub's Kubernetes CA: %w", errdefs.ErrInternal, err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) || cert.CheckSignatureFrom(ca) != nil {
		return none, "", time.Time{}, fmt.Errorf("%w: the hub's certificate is not for this key or not from its Kubernetes CA", errdefs.ErrInternal)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return none, "", time.Time{}, fmt.Errorf("admin kubeconfig key: %w", err)
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	return kube.Credentials{Server: res.Server, CA: pemOf("CERTIFICATE", ca.Raw), Cert: pemOf("CERTIFICATE", cert.Raw),
		Key: pemOf("PRIVATE KEY", der)}, res.User, cert.NotAfter, nil
}
