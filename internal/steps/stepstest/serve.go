package stepstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/spec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// HubServerName is the name in the hub's certificate.
const HubServerName = api.HubServerName

// Env is a fake cluster on loopback: a hub and one node API per spec
// node, each behind its own certificate from a test CA.
type Env struct {
	CA      *pki.CA
	Hub     *Hub
	HubAddr string
	Nodes   map[string]*Node
	// NodeAddrs are the node APIs' addresses by node name.
	NodeAddrs map[string]string
	client    tls.Certificate
}

// Serve starts the fake cluster of s (nodes enrolled on build); it stops
// with the test.
func Serve(t testing.TB, s *spec.ClusterSpec, build string) *Env {
	t.Helper()
	e := &Env{CA: pkitest.NewCA(t), Hub: NewHub(s, build), Nodes: map[string]*Node{}, NodeAddrs: map[string]string{}}
	is, err := e.CA.IssueClient("olga", pki.RoleOperator, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if e.client, err = is.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	hubCert, err := e.CA.IssueServer([]string{HubServerName}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := hubCert.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	e.HubAddr = e.serve(t, hc, func(g *grpc.Server) {
		api.RegisterAdmin(g, e.Hub)
		api.RegisterRuns(g, e.Hub)
	})
	for _, n := range s.Topology.Nodes {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		cert, err := e.CA.SignNodeCSR(csr, n.Name, string(n.Role), time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		node := NewNode(n.Name)
		e.Nodes[n.Name] = node
		e.NodeAddrs[n.Name] = e.serve(t, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert},
			func(g *grpc.Server) { api.RegisterNode(g, node) })
	}
	return e
}

// ClientTLS is an operator's side of mutual TLS (no ServerName: the
// caller sets it per server).
func (e *Env) ClientTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{e.client}, RootCAs: e.CA.Pool(), MinVersion: tls.VersionTLS13}
}

func (e *Env) serve(t testing.TB, cert tls.Certificate, register func(*grpc.Server)) string {
	t.Helper()
	g := grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: e.CA.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})))...)
	register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return lis.Addr().String()
}

// WriteKeys writes a key directory as the CLI reads it: the test CA's
// certificate and an admin client certificate and key.
func (e *Env) WriteKeys(t testing.TB) string {
	t.Helper()
	return pkitest.WriteKeys(t, e.CA, pki.RoleAdmin)
}
