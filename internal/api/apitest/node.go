// Package apitest serves fakes of kubedos's gRPC services over real mTLS,
// for the tests of their clients (the CLI, internal/cluster).
package apitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
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
	ca := pkitest.NewCA(t)
	return NodeEnv{Keys: pkitest.WriteKeys(t, ca, pki.RoleAdmin), Server: NodeServerOf(t, ca, name, role, impl)}
}

// NodeServerOf is a server for impl as node name of role with a
// certificate from ca (a test's own cluster CA), not yet serving.
func NodeServerOf(t testing.TB, ca *pki.CA, name, role string, impl api.NodeServer) *grpc.Server {
	t.Helper()
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
	return s
}

// Serve serves on a loopback port until the test ends (Server.Stop ends
// the goroutine) and returns the address.
func (e NodeEnv) Serve(t testing.TB) string {
	t.Helper()
	return Serve(t, e.Server)
}

// Serve serves s on a loopback port until the test ends and returns the
// address.
func Serve(t testing.TB, s *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	return lis.Addr().String()
}
