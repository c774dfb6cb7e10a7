package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake where the server presents cert and the
// client uses conf; it returns the client's error.
func handshake(t *testing.T, conf *tls.Config, cert tls.Certificate) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		s, err := lis.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		_ = tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}).HandshakeContext(context.Background())
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Certificates are issued at t0; the handshake checks at real time.
	conf = conf.Clone()
	conf.Time = func() time.Time { return t0 }
	return tls.Client(c, conf).HandshakeContext(context.Background())
}

func pair(t *testing.T, cert *x509.Certificate, key any) tls.Certificate {
	t.Helper()
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// Hole 4: a node certificate named like the hub (the CA signs whatever node
// name attests) passed every client's check of the hub: the cluster CA and
// the name. Clients now require the hub's policy OID, which node
// certificates never carry, and the CA refuses the hub's name to nodes.
func TestAttackNodeCertAsHub(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	key := mustP256(t)
	forged, err := ca.issue(nodeTemplate(HubServerName, "worker"), key.Public(), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := ca.IssueServer([]string{HubServerName, "10.0.0.1"}, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	hubPair, err := hub.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	nameOnly := &tls.Config{RootCAs: ca.Pool(), ServerName: HubServerName, MinVersion: tls.VersionTLS13}
	if err := handshake(t, nameOnly, pair(t, forged, key)); err != nil {
		t.Fatalf("the attack no longer works even on a name-only client (%v): the test proves nothing", err)
	}
	err = handshake(t, HubClientTLS(ca.Pool()), pair(t, forged, key))
	if !errors.Is(err, ErrNotHub) || !strings.Contains(err.Error(), HubServerName) {
		t.Errorf("hub client accepted a node certificate named %s: %v", HubServerName, err)
	}
	if err := handshake(t, HubClientTLS(ca.Pool()), hubPair); err != nil {
		t.Errorf("hub client refused the hub: %v", err)
	}
	for _, name := range []string{HubServerName, "localhost"} {
		der := csrDER(t, key, &x509.CertificateRequest{})
		if _, err := ca.SignNodeCSR(der, name, "worker", time.Hour, t0); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("SignNodeCSR(%s) = %v, want a refusal: the name is reserved", name, err)
		}
	}
}

// The hub's metrics certificate names the hub but carries no policy: Go
// before 1.22 (Debian's Prometheus) can parse it, and no client of the
// hub's API takes it for the hub.
func TestMetricsServerCertIsNoHub(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	m, err := ca.IssueMetricsServer([]string{HubServerName}, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Cert.Policies) != 0 || len(m.Cert.PolicyIdentifiers) != 0 || len(m.Cert.DNSNames) != 1 || m.Cert.DNSNames[0] != HubServerName {
		t.Errorf("metrics certificate: policies %v, names %v", m.Cert.Policies, m.Cert.DNSNames)
	}
	pair, err := m.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	nameOnly := &tls.Config{RootCAs: ca.Pool(), ServerName: HubServerName, MinVersion: tls.VersionTLS13}
	if err := handshake(t, nameOnly, pair); err != nil {
		t.Errorf("a client checking the name refused the metrics certificate: %v", err)
	}
	if err := handshake(t, HubClientTLS(ca.Pool()), pair); !errors.Is(err, ErrNotHub) {
		t.Errorf("hub client accepted the metrics certificate as the hub: %v", err)
	}
	if _, err := ca.IssueMetricsServer(nil, time.Hour, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("no hosts: %v", err)
	}
}
