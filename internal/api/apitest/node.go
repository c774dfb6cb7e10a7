// Package apitest serves fakes of kubedos's gRPC services over real mTLS,
// for the tests of their clients (the CLI, internal/cluster).
package apitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// NodeEnv is a key directory as the CLI reads it (the cluster CA and an
// admin certificate) and a node API server with a certificate from that
// CA, stopped when the test ends.
type NodeEnv struct {
	Keys   string
	Server *grpc.Server
}

// NewNode makes a CA, writes Keys and returns a server for impl as node
// name of role, not yet serving.
func NewNode(t testing.TB, name, role string, impl api.NodeServer) NodeEnv {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(caCert, key)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	admin, err := ca.IssueClient("admin", pki.RoleAdmin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for f, data := range map[string][]byte{sign.FileCACert: ca.CertPEM(), sign.FileAdminCert: admin.CertPEM, sign.FileAdminKey: admin.KeyPEM} {
		if err := os.MkdirAll(filepath.Join(keys, filepath.Dir(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := ca.SignNodeCSR(csr, name, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair := tls.Certificate{Certificate: [][]byte{nodeCert.Raw}, PrivateKey: nodeKey, Leaf: nodeCert}
	s := grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})))...)
	api.RegisterNode(s, impl)
	t.Cleanup(s.Stop)
	return NodeEnv{Keys: keys, Server: s}
}

// Serve serves on a loopback port until the test ends (Server.Stop ends
// the goroutine) and returns the address.
func (e NodeEnv) Serve(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.Server.Serve(lis) }()
	return lis.Addr().String()
}
