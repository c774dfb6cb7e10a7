package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Server serves a Hub over gRPC with TLS: the enrollment service for nodes
// (authenticated by their TPM, no certificate yet) and the admin service for
// operators (client certificate from the cluster CA, role-checked, checked
// against the revocation list on every call).
type Server struct {
	hub  *Hub
	ca   *pki.CA
	grpc *grpc.Server
	// metrics is the TLS configuration of ServeMetrics.
	metrics *tls.Config

	mu sync.Mutex
	// logins are the console's login links (ServeConsole); nil: none.
	logins *ConsoleLogins
}

// NewServer makes the gRPC server with a fresh TLS certificate for the hub
// signed by the cluster CA, valid for lifetime, for api.HubServerName and hosts.
func NewServer(h *Hub, ca *pki.CA, hosts []string, lifetime time.Duration) (*Server, error) {
	cert, err := ca.IssueServer(append([]string{api.HubServerName}, hosts...), lifetime, time.Now())
	if err != nil {
		return nil, fmt.Errorf("hub TLS certificate: %w", err)
	}
	tc, err := cert.TLSCertificate()
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{tc},
		ClientCAs:    ca.Pool(),
		// Nodes enrolling have no certificate yet; the admin service
		// refuses calls without one (authenticate below).
		ClientAuth: tls.VerifyClientCertIfGiven,
		MinVersion: tls.VersionTLS13,
	}
	// /metrics has a certificate of its own, without the hub's policy OID
	// (pki.IssueMetricsServer says why).
	mcert, err := ca.IssueMetricsServer(append([]string{api.HubServerName}, hosts...), lifetime, time.Now())
	if err != nil {
		return nil, fmt.Errorf("hub metrics TLS certificate: %w", err)
	}
	mtc, err := mcert.TLSCertificate()
	if err != nil {
		return nil, err
	}
	s := &Server{hub: h, ca: ca, metrics: &tls.Config{Certificates: []tls.Certificate{mtc}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}}
	s.grpc = grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewTLS(conf)),
		// The one translation of the hub's error classes to gRPC codes
		// (house rule 2); statuses made here pass through.
		grpc.ChainUnaryInterceptor(remoteInterceptor, errdefs.UnaryServerInterceptor),
		grpc.ChainStreamInterceptor(errdefs.StreamServerInterceptor))...)
	api.RegisterEnrollment(s.grpc, enrollmentService{s})
	api.RegisterAdmin(s.grpc, adminService{s: s})
	registerRevocations(s)
	registerRuns(s)
	api.RegisterSnapshots(s.grpc, snapshotsService{s})
	api.RegisterPlanes(s.grpc, planesService{s})
	api.RegisterKubeCerts(s.grpc, kubeCertsService{s})
	api.RegisterObservability(s.grpc, observabilityService{s})
	return s, nil
}

// Serve accepts connections on lis until ctx ends, then stops gracefully.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	return api.Serve(ctx, s.grpc, lis)
}

// authenticate maps the caller's TLS client certificate to a Peer: chained
// to the CA, in its validity, not revoked, with a role.
func (s *Server) authenticate(ctx context.Context) (pki.Peer, error) {
	cert, err := s.peerCertificate(ctx)
	if err != nil {
		return pki.Peer{}, err
	}
	pe, err := s.ca.Authenticate(cert, time.Now(), s.hub.Revocations())
	if err != nil {
		if errors.Is(err, pki.ErrRevoked) {
			method, _ := grpc.Method(ctx)
			s.hub.refusedRevoked(ctx, cert, method)
		}
		return pki.Peer{}, status.Error(codes.Unauthenticated, err.Error())
	}
	return pe, nil
}

// peerCertificate is the caller's TLS client certificate, unchecked: the
// handshake verified its chain (VerifyClientCertIfGiven), Authenticate
// checks the rest.
func (s *Server) peerCertificate(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "a client certificate from the cluster CA is required")
	}
	return ti.State.PeerCertificates[0], nil
}

// remoteInterceptor tells the hub which TCP peer each call comes from
// (WithRemote): the key of the unauthenticated rate limit and of the
// audit summaries.
func remoteInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		ctx = WithRemote(ctx, p.Addr.String())
	}
	return h(ctx, req)
}

type enrollmentService struct{ s *Server }

func (e enrollmentService) Begin(ctx context.Context, r *api.BeginRequest) (*api.BeginResponse, error) {
	b, err := e.s.hub.BeginEnrollment(ctx, BeginRequest{Name: r.Name, Role: r.Role, Identity: TPMIdentity{
		EKPublic: r.Identity.EKPublic, EKCertificate: r.Identity.EKCertificate, AK: AKParameters(r.Identity.AK)}})
	if err != nil {
		return nil, err
	}
	return &api.BeginResponse{Session: b.Session, Challenge: attest.Challenge(b.Challenge)}, nil
}

func (e enrollmentService) Activate(ctx context.Context, r *api.ActivateRequest) (*api.ActivateResponse, error) {
	n, err := e.s.hub.CompleteActivation(ctx, r.Session, r.Secret)
	if err != nil {
		return nil, err
	}
	return &api.ActivateResponse{Nonce: n.Value, ExpiresAt: n.Expires, PCRs: []int{4, 7, 11}}, nil
}

func (e enrollmentService) Enroll(ctx context.Context, r *api.EnrollRequest) (*api.EnrollResponse, error) {
	got, err := e.s.hub.Enroll(ctx, EnrollRequest{Session: r.Session, Nonce: r.Nonce, Evidence: Evidence(r.Evidence), BuildID: r.BuildID, CSR: r.CSR})
	if err != nil {
		return nil, err
	}
	return &api.EnrollResponse{Certificate: got.Cert.Raw, CA: e.s.ca.Certificate().Raw, NotAfter: got.Cert.NotAfter}, nil
}

func (e enrollmentService) RenewBegin(ctx context.Context, _ *api.RenewBeginRequest) (*api.RenewBeginResponse, error) {
	pe, err := e.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	n, err := e.s.hub.BeginRenewal(ctx, pe)
	if err != nil {
		return nil, err
	}
	return &api.RenewBeginResponse{Session: n.Session, Nonce: n.Value, ExpiresAt: n.Expires, PCRs: []int{4, 7, 11}}, nil
}

func (e enrollmentService) Renew(ctx context.Context, r *api.EnrollRequest) (*api.EnrollResponse, error) {
	pe, err := e.s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	got, err := e.s.hub.Renew(ctx, pe, EnrollRequest{Session: r.Session, Nonce: r.Nonce, Evidence: Evidence(r.Evidence), BuildID: r.BuildID, CSR: r.CSR})
	if err != nil {
		return nil, err
	}
	return &api.EnrollResponse{Certificate: got.Cert.Raw, CA: e.s.ca.Certificate().Raw, NotAfter: got.Cert.NotAfter}, nil
}

// adminService serves the admin calls: over gRPC (as nil, the caller is
// the TLS peer), or in process for a Caller (the console on the master).
type adminService struct {
	s  *Server
	as *Caller
}

func (a adminService) call(ctx context.Context, fn func(pki.Peer) error) error {
	var pe pki.Peer
	var err error
	if a.as != nil {
		pe, err = a.as.Peer(ctx)
	} else {
		pe, err = a.s.authenticate(ctx)
	}
	if err != nil {
		return err
	}
	return fn(pe)
}

func (a adminService) ListNodes(ctx context.Context, _ *api.ListNodesRequest) (*api.ListNodesResponse, error) {
	out := &api.ListNodesResponse{Nodes: []api.Node{}}
	err := a.call(ctx, func(p pki.Peer) error {
		nodes, err := a.s.hub.ListNodes(ctx, p)
		for _, n := range nodes {
			an, rerr := a.apiNode(n)
			if rerr != nil {
				return rerr
			}
			out.Nodes = append(out.Nodes, an)
		}
		return err
	})
	return out, err
}

func (a adminService) GetNode(ctx context.Context, r *api.NodeRequest) (*api.Node, error) {
	var out api.Node
	err := a.call(ctx, func(p pki.Peer) error {
		n, err := a.s.hub.GetNode(ctx, p, r.Name)
		if err != nil {
			return err
		}
		out, err = a.apiNode(n)
		return err
	})
	return &out, err
}

// act runs a state-changing action and returns the node as it is after.
func (a adminService) act(ctx context.Context, name string, fn func(pki.Peer) error) (*api.Node, error) {
	var out api.Node
	err := a.call(ctx, func(p pki.Peer) error {
		if err := fn(p); err != nil {
			return err
		}
		n, err := a.s.hub.GetNode(ctx, p, name)
		if err != nil {
			return err
		}
		out, err = a.apiNode(n)
		return err
	})
	return &out, err
}

func (a adminService) Revoke(ctx context.Context, r *api.NodeRequest) (*api.Node, error) {
	return a.act(ctx, r.Name, func(p pki.Peer) error { return a.s.hub.Revoke(ctx, p, r.Name, r.Reason) })
}

func (a adminService) Fence(ctx context.Context, r *api.NodeRequest) (*api.Node, error) {
	return a.act(ctx, r.Name, func(p pki.Peer) error { return a.s.hub.Fence(ctx, p, r.Name, r.Reason) })
}

func (a adminService) Replace(ctx context.Context, r *api.NodeRequest) (*api.Node, error) {
	return a.act(ctx, r.Name, func(p pki.Peer) error { return a.s.hub.Replace(ctx, p, r.Name, r.Reason) })
}

func (a adminService) AssignBuild(ctx context.Context, r *api.AssignBuildRequest) (*api.Node, error) {
	return a.act(ctx, r.Name, func(p pki.Peer) error {
		_, err := a.s.hub.AssignBuild(ctx, p, r.Name, r.Manifest, r.Signature)
		return err
	})
}

func (a adminService) RevokeClient(ctx context.Context, r *api.RevokeClientRequest) (*api.RevokedClient, error) {
	var out api.RevokedClient
	err := a.call(ctx, func(p pki.Peer) error {
		rc, err := a.s.hub.RevokeClient(ctx, p, r.Certificate, r.Reason)
		out = api.RevokedClient{Serial: rc.Serial, Client: rc.Client, NotAfter: rc.NotAfter, At: rc.At, Reason: rc.Reason}
		return err
	})
	return &out, err
}

func (a adminService) Audit(ctx context.Context, r *api.AuditRequest) (*api.AuditResponse, error) {
	out := &api.AuditResponse{Entries: []api.AuditEntry{}}
	err := a.call(ctx, func(p pki.Peer) error {
		entries, err := a.s.hub.Audit(ctx, p, r.From, r.Limit)
		if err != nil {
			return err
		}
		for _, e := range entries {
			out.Entries = append(out.Entries, api.AuditEntry{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action,
				Target: e.Target, Outcome: e.Outcome, Detail: e.Detail, Hash: e.Hash})
		}
		head, chainErr := a.s.hub.Store().VerifyAuditChain()
		out.ChainOK = chainErr == nil
		if out.ChainOK {
			out.Head = &api.AuditHead{Seq: head.Seq, Hash: head.Hash}
		}
		return nil
	})
	return out, err
}

func (a adminService) Seal(ctx context.Context, r *api.SealRequest) (*api.Sealed, error) {
	var out api.Sealed
	err := a.call(ctx, func(p pki.Peer) error {
		got, err := a.s.hub.Seal(ctx, p, r.Record, r.Signature)
		out = api.Sealed{Seq: got.Entry.Seq, Hash: got.Entry.Hash, RecordSHA256: got.RecordSHA256}
		return err
	})
	return &out, err
}

func (a adminService) EtcdSnapshots(ctx context.Context, _ *api.EtcdSnapshotsRequest) (*api.EtcdSnapshots, error) {
	out := &api.EtcdSnapshots{Snapshots: []api.EtcdSnapshot{}}
	err := a.call(ctx, func(p pki.Peer) error {
		l, err := a.s.hub.EtcdSnapshots(ctx, p)
		out.Kept = l.Kept
		for _, s := range l.Snapshots {
			out.Snapshots = append(out.Snapshots, apiEtcdSnapshot(s))
		}
		return err
	})
	return out, err
}

func (a adminService) TakeEtcdSnapshot(ctx context.Context, _ *api.TakeEtcdSnapshotRequest) (*api.EtcdSnapshot, error) {
	var out api.EtcdSnapshot
	err := a.call(ctx, func(p pki.Peer) error {
		s, err := a.s.hub.TakeEtcdSnapshot(ctx, p)
		if err == nil {
			out = apiEtcdSnapshot(s)
		}
		return err
	})
	return &out, err
}

func (a adminService) OpenWindow(ctx context.Context, r *api.WindowRequest) (*api.WindowResponse, error) {
	var out api.WindowResponse
	err := a.call(ctx, func(p pki.Peer) error {
		w, err := a.s.hub.OpenWindow(ctx, p, time.Duration(r.Seconds)*time.Second)
		out.Until = w.Until
		return err
	})
	return &out, err
}

func (a adminService) RegisterEK(ctx context.Context, r *api.RegisterEKRequest) (*api.Empty, error) {
	err := a.call(ctx, func(p pki.Peer) error { return a.s.hub.RegisterEK(ctx, p, r.Name, strings.ToLower(r.EKHash)) })
	return &api.Empty{}, err
}

func (a adminService) RetireBuild(ctx context.Context, r *api.RetireBuildRequest) (*api.RetiredBuild, error) {
	var out api.RetiredBuild
	err := a.call(ctx, func(p pki.Peer) error {
		rb, err := a.s.hub.RetireBuild(ctx, p, r.BuildID, r.Reason)
		out = api.RetiredBuild{BuildID: rb.ID, Reason: rb.Reason, At: rb.At, By: rb.By}
		return err
	})
	return &out, err
}

// apiNode is n on the wire, with the retirement of the build it runs.
func (a adminService) apiNode(n Node) (api.Node, error) {
	out := apiNode(n)
	rb, err := a.s.hub.Retirement(n)
	if rb != nil {
		out.Retired = rb.String()
	}
	return out, err
}

func apiNode(n Node) api.Node {
	out := api.Node{Name: n.Name, Role: n.Role, State: n.State, EKHash: n.EKHash, BuildID: n.BuildID, Target: n.Target,
		CertSerial: n.CertSerial, CertNotAfter: n.CertNotAfter, EnrolledAt: n.EnrolledAt}
	if n.Reason != nil {
		out.Reason = &api.Refusal{Check: n.Reason.Check, Detail: n.Reason.Detail}
	}
	return out
}
