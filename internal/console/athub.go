// The console the hub serves on the master (port 8443): every operator
// logs in as themselves, with their cluster certificate in the browser or
// a one-time link the hub minted for that certificate (kubedos console
// login), and every page and action goes to the hub in process as that
// operator (hub.Caller): the hub's own authentication, role table and
// audit. Nothing here holds an operator's key, so what needs one at a
// node's API (restart a service, stream an upgrade) is not offered.

package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/hub"
	"github.com/kubedos/kubedos/internal/hubhost"
	"github.com/kubedos/kubedos/internal/pki"
)

// NodeAPIAtHub is why the console at the hub shows no node health,
// services, restart or upgrade.
const NodeAPIAtHub = "This console runs at the hub and holds no operator's key: a node's own API (health, planes, drift, " +
	"services, restart, upgrade) answers only a caller's own certificate, and the hub does not act there on your behalf " +
	"(never with the master's node certificate). Use kubedos console on your machine for those."

// AtHubOptions tune ServeAtHub.
type AtHubOptions struct {
	// Addr is the address operators reach the console at, for the login
	// links (empty: the hub's first host and the listener's port).
	Addr string
	Logf func(string, ...any)
	Now  func() time.Time
}

// TLSAtHub is the console's TLS at the hub: a certificate from the cluster
// CA for the hub's hosts (not the hub's own: it lacks the hub's policy, so
// it can never pass for the hub's API), TLS 1.3, and a client
// certificate asked for but not required (VerifyClientCertIfGiven against
// the cluster CA; the role and the revocation list are checked per
// session).
func TLSAtHub(ca *pki.CA, hosts []string, now time.Time) (*tls.Config, error) {
	is, err := ca.IssueConsoleServer(hosts, hubhost.ServerCertLifetime, now)
	if err != nil {
		return nil, fmt.Errorf("console TLS certificate: %w", err)
	}
	tc, err := is.TLSCertificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{tc}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven}, nil
}

// AtHub makes the console of h, whose API is at hubAddr: the hub answers
// ConsoleLogin with links to url from now on.
func AtHub(h *hubhost.Hub, url, hubAddr string, now func() time.Time) (*Console, error) {
	srv := h.Server()
	ops := hubOperators{srv: srv, logins: srv.ServeConsole(url)}
	s := h.Spec()
	return New(Config{Operators: ops, Spec: s, Cluster: s.Metadata.Name, HubAddr: hubAddr, NodeAPINote: NodeAPIAtHub, Now: now})
}

// ServeAtHub serves h's console on lis until ctx ends: kubedosd on the
// master runs it beside the hub (hubhost.KeeperConfig.Console).
func ServeAtHub(ctx context.Context, h *hubhost.Hub, lis net.Listener, opt AtHubOptions) error {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	hosts := h.Hosts()
	if len(hosts) == 0 {
		return fmt.Errorf("%w: console: the hub names no host for its certificate", errdefs.ErrInvalid)
	}
	conf, err := TLSAtHub(h.CA(), hosts, opt.Now())
	if err != nil {
		return err
	}
	addr := opt.Addr
	if addr == "" {
		port := strconv.Itoa(api.ConsolePort)
		if ta, ok := lis.Addr().(*net.TCPAddr); ok {
			port = strconv.Itoa(ta.Port)
		}
		addr = net.JoinHostPort(hosts[0], port)
	}
	c, err := AtHub(h, "https://"+addr, net.JoinHostPort(hosts[0], strconv.Itoa(api.HubPort)), opt.Now)
	if err != nil {
		return err
	}
	if opt.Logf != nil {
		opt.Logf("web console on https://%s/ (operators log in with their certificate or kubedos console login)", addr)
	}
	return c.Serve(ctx, lis, conf)
}

// hubOperators are the console's operators at the hub.
type hubOperators struct {
	srv    *hub.Server
	logins *hub.ConsoleLogins
}

func (o hubOperators) Redeem(ctx context.Context, token, remote string) (*Operator, error) {
	ctx = hub.WithRemote(ctx, remote)
	c, err := o.logins.Redeem(ctx, token, remote)
	if err != nil {
		return nil, err
	}
	pe, err := c.Peer(ctx)
	if err != nil {
		return nil, err
	}
	return operatorAt(c, pe.Role), nil
}

func (o hubOperators) Certificate(ctx context.Context, cert *x509.Certificate, remote string) (*Operator, error) {
	ctx = hub.WithRemote(ctx, remote)
	c := o.srv.As(cert, "")
	pe, err := c.Peer(ctx)
	if err != nil {
		return nil, err
	}
	if err := o.logins.Opened(pe, "client certificate", remote); err != nil {
		return nil, err
	}
	return operatorAt(c, pe.Role), nil
}

// operatorAt is the operator c acts as at the hub, with role.
func operatorAt(c *hub.Caller, role pki.Role) *Operator {
	op := NewOperator(c.Certificate(), role, c)
	op.Runs = c
	op.Alive = func(ctx context.Context) error {
		_, err := c.Peer(ctx)
		return err
	}
	// Revoke, fence and replace at the hub, as the operator. Without the
	// operator's Kubernetes credential or the VM's target the console
	// does only the hub's part (docs/console.md).
	op.Act = func(ctx context.Context, a cluster.NodeAction) (cluster.NodeActed, error) {
		var n *api.Node
		var err error
		switch a.Verb {
		case cluster.NodeRevoke:
			n, err = c.Revoke(ctx, a.Name, a.Reason)
		case cluster.NodeFence:
			n, err = c.Fence(ctx, a.Name, a.Reason)
		case cluster.NodeReplace:
			n, err = c.Replace(ctx, a.Name, a.Reason)
		default:
			return cluster.NodeActed{}, fmt.Errorf("%w: unknown action %q", errdefs.ErrInvalid, a.Verb)
		}
		if err != nil {
			return cluster.NodeActed{}, err
		}
		return cluster.NodeActed{Node: n}, nil
	}
	return op
}
