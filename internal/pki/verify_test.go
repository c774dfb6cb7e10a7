package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestAuthenticate(t *testing.T) {
	ca := newTestCA(t, "kubedos test CA")
	other := newTestCA(t, "another CA")
	node, err := ca.SignNodeCSR(csrDER(t, mustP256(t), &x509.CertificateRequest{}), "w-1", "worker", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueClient("alice", RoleOperator, 24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueClient("mallory", RoleAdmin, 24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate the CA signed with no kubedos role (never issued by this
	// package, but a CA key in the wrong hands might).
	roleless, err := ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: "bob"}}, mustP256(t).Public(), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := NewRevocations(SerialString(op.Cert.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		now  time.Time
		rev  *Revocations
		want Peer
		err  error
	}{
		{"node", node, t0, nil, Peer{Name: "w-1", Role: RoleNode, NodeRole: "worker", Serial: SerialString(node.SerialNumber)}, nil},
		{"operator", op.Cert, t0.Add(time.Hour), nil, Peer{Name: "alice", Role: RoleOperator, Serial: SerialString(op.Cert.SerialNumber)}, nil},
		{"node not revoked", node, t0, revoked, Peer{Name: "w-1", Role: RoleNode, NodeRole: "worker", Serial: SerialString(node.SerialNumber)}, nil},
		{"revoked", op.Cert, t0, revoked, Peer{}, ErrRevoked},
		{"expired", node, t0.Add(time.Hour + time.Second), nil, Peer{}, ErrExpired},
		{"within the backdate", node, t0.Add(-30 * time.Second), nil, Peer{Name: "w-1", Role: RoleNode, NodeRole: "worker", Serial: SerialString(node.SerialNumber)}, nil},
		{"not yet valid", node, t0.Add(-2 * time.Minute), nil, Peer{}, ErrNotYetValid},
		{"another CA", foreign.Cert, t0, nil, Peer{}, ErrUntrusted},
		{"the CA itself", ca.Certificate(), t0, nil, Peer{}, ErrUntrusted},
		{"no role", roleless, t0, nil, Peer{}, ErrNoRole},
		{"nil", nil, t0, nil, Peer{}, ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ca.Authenticate(tt.cert, tt.now, tt.rev)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Authenticate = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Authenticate = %+v, want %+v", got, tt.want)
			}
			// A node holds the CA certificate only: the same answers.
			got, err = AuthenticateAgainst(ca.Certificate(), tt.cert, tt.now, tt.rev)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) || got != tt.want {
				t.Errorf("AuthenticateAgainst = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := AuthenticateAgainst(nil, node, t0, nil); !errors.Is(err, ErrBadCA) {
		t.Errorf("AuthenticateAgainst without a CA = %v, want ErrBadCA", err)
	}
	if got := (Peer{Name: "w-1", Role: RoleNode}).Actor(); got != "node:w-1" {
		t.Errorf("node actor = %q", got)
	}
}

func TestIssueClient(t *testing.T) {
	ca := newTestCA(t, "ca")
	for _, role := range OperatorRoles {
		is, err := ca.IssueClient("alice", role, 8*time.Hour, t0)
		if err != nil {
			t.Fatalf("IssueClient(%s): %v", role, err)
		}
		c := is.Cert
		if got, err := RoleOf(c); got != role || err != nil {
			t.Errorf("RoleOf = %q, %v; want %q", got, err, role)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || c.IsCA {
			t.Errorf("ExtKeyUsage %v IsCA %v, want client auth leaf", c.ExtKeyUsage, c.IsCA)
		}
		if !c.NotAfter.Equal(t0.Add(8 * time.Hour)) {
			t.Errorf("NotAfter %s", c.NotAfter)
		}
		pair, err := is.TLSCertificate()
		if err != nil {
			t.Fatalf("TLSCertificate: %v", err)
		}
		if len(pair.Certificate) != 1 {
			t.Errorf("TLS chain of %d", len(pair.Certificate))
		}
	}
	for _, tt := range []struct {
		name string
		role Role
	}{{"alice", RoleNode}, {"alice", "root"}, {"", RoleReader}, {"node:w-1", RoleReader}, {"a\nb", RoleReader}} {
		if _, err := ca.IssueClient(tt.name, tt.role, time.Hour, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("IssueClient(%q, %q) = %v, want ErrInvalid", tt.name, tt.role, err)
		}
	}
}

func TestIssueServer(t *testing.T) {
	ca := newTestCA(t, "ca")
	is, err := ca.IssueServer([]string{"hub.kubedos.internal", "10.77.0.1", "::1", "localhost"}, 30*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := is.Cert
	if !slices.Equal(c.DNSNames, []string{"hub.kubedos.internal", "localhost"}) {
		t.Errorf("DNS SANs %q", c.DNSNames)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.IPv4(10, 77, 0, 1)) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs %v", c.IPAddresses)
	}
	for _, host := range []string{"10.77.0.1", "hub.kubedos.internal"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host, CurrentTime: t0}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := RoleOf(c); !errors.Is(err, ErrNoRole) {
		t.Errorf("the hub's server certificate must carry no operator role, RoleOf = %v", err)
	}
	for _, hosts := range [][]string{nil, {"bad host"}, {"-x.example"}} {
		if _, err := ca.IssueServer(hosts, time.Hour, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("IssueServer(%q) = %v, want ErrInvalid", hosts, err)
		}
	}
}

func TestRevocations(t *testing.T) {
	r, err := NewRevocations()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add("1f", "BAD"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Add with a malformed serial = %v, want ErrInvalid", err)
	}
	if r.Len() != 0 {
		t.Fatalf("a failed Add added %d serials", r.Len())
	}
	// Concurrent adds and checks (run with -race).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				n := big.NewInt(int64(i*1000 + j + 1))
				if err := r.Add(SerialString(n)); err != nil {
					t.Error(err)
					return
				}
				if !r.Revoked(n) {
					t.Errorf("serial %s not revoked after Add", n)
				}
			}
		})
	}
	wg.Wait()
	if r.Len() != 800 || len(r.Serials()) != 800 {
		t.Errorf("Len %d, Serials %d, want 800", r.Len(), len(r.Serials()))
	}
	c := &x509.Certificate{SerialNumber: big.NewInt(1001), Subject: pkix.Name{CommonName: "w-1"}}
	if err := r.Check(c); !errors.Is(err, ErrRevoked) {
		t.Errorf("Check revoked = %v", err)
	}
	c.SerialNumber = big.NewInt(999999)
	if err := r.Check(c); err != nil {
		t.Errorf("Check not revoked = %v", err)
	}
	if err := r.Check(nil); err == nil {
		t.Error("Check(nil) passed")
	}
}
