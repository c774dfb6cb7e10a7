package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// Hole 4 at the CLI: a server presenting a node certificate named like the
// hub (chained to the cluster CA) is refused when the CLI dials the hub.
func TestHubDialRefusesNodeCertNamedHub(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(der)
	ca, err := pki.NewCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.IssueClient("admin", pki.RoleAdmin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	for f, data := range map[string][]byte{sign.FileCACert: ca.CertPEM(), sign.FileAdminCert: admin.CertPEM, sign.FileAdminKey: admin.KeyPEM} {
		if err := os.MkdirAll(filepath.Join(keys, filepath.Dir(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What the CA signed for a node that attested under the hub's name
	// (before names were reserved): node template, the hub's DNS name.
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forgedTmpl := &x509.Certificate{SerialNumber: big.NewInt(3),
		Subject:  pkix.Name{CommonName: api.HubServerName, Organization: []string{pki.OrgNode}, OrganizationalUnit: []string{"worker"}},
		DNSNames: []string{api.HubServerName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err = x509.CreateCertificate(rand.Reader, forgedTmpl, caCert, nodeKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: nodeKey}}})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(serverName string) error {
		conf, err := Access{Keys: keys}.TLS(serverName)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", lis.Addr().String(), conf)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(api.HubServerName); !errors.Is(err, pki.ErrNotHub) {
		t.Errorf("dialing the hub reached a node certificate named %s: %v, want ErrNotHub", api.HubServerName, err)
	}
}
