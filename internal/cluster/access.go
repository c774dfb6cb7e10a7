package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// Access is an operator's credentials: the key directory with the
// cluster CA and, unless Cert and Key name another, its admin certificate.
type Access struct {
	Keys, Cert, Key string
}

// TLS is the client side of mTLS with the operator's certificate, trusting
// the cluster CA for serverName, TLS 1.3 only.
func (a Access) TLS(serverName string) (*tls.Config, error) {
	cert, key := a.Cert, a.Key
	if cert == "" {
		cert = filepath.Join(a.Keys, sign.FileAdminCert)
	}
	if key == "" {
		key = filepath.Join(a.Keys, sign.FileAdminKey)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	ca, err := sign.ReadCertificate(filepath.Join(a.Keys, sign.FileCACert))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS13}
	if serverName == api.HubServerName {
		// A node's certificate may carry any node's name; the hub's alone
		// carries the hub's policy.
		conf.VerifyConnection = pki.VerifyHub
	}
	return conf, nil
}

// Conn dials addr, checking the server's certificate chains to the
// cluster CA and names serverName.
func (a Access) Conn(addr, serverName string) (*grpc.ClientConn, error) {
	conf, err := a.TLS(serverName)
	if err != nil {
		return nil, err
	}
	cc, err := api.Dial(addr, conf)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", serverName, addr, err)
	}
	return cc, nil
}

// Hub connects to the hub's admin service at addr; done closes it.
func (a Access) Hub(addr string) (cl *api.AdminClient, done func(), err error) {
	cc, err := a.Conn(addr, api.HubServerName)
	if err != nil {
		return nil, nil, err
	}
	return api.NewAdminClient(cc), func() { cc.Close() }, nil
}

// Node connects to the node API at addr of the node called name.
func (a Access) Node(addr, name string) (cl *api.NodeClient, done func(), err error) {
	cc, err := a.Conn(addr, name)
	if err != nil {
		return nil, nil, err
	}
	return api.NewNodeClient(cc), func() { cc.Close() }, nil
}
