package api

import (
	"context"
	"math"
	"time"

	"google.golang.org/grpc"
)

// AdminService is the operator's view of the hub; every call needs a client
// certificate from the cluster CA with a role that allows it.
const AdminService = "kubedos.hub.v1.Admin"

// Refusal is why a node is quarantined (or revoked): the check that failed
// and its exact detail (which PCR, expected vs got).
type Refusal struct {
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// NodeState is where a node is in its life, as the hub records it (the
// hub's State is this type).
type NodeState string

// The node states. Only an enrolled node holds a valid certificate.
const (
	// NodePending: the deploy step registered the node's EK; not enrolled yet.
	NodePending NodeState = "pending"
	// NodeEnrolled: attested, certificate issued.
	NodeEnrolled NodeState = "enrolled"
	// NodeQuarantined: failed a check after proving its TPM; refused until
	// replaced.
	NodeQuarantined NodeState = "quarantined"
	// NodeRevoked: an operator revoked it; refused until replaced.
	NodeRevoked NodeState = "revoked"
	// NodeFenced: revoked and to be stopped; refused until replaced.
	NodeFenced NodeState = "fenced"
	// NodeReplaced: its identity is retired; the name is free for a fresh
	// TPM through the same gate.
	NodeReplaced NodeState = "replaced"
)

// Node is a node as the hub records it.
type Node struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	State   NodeState `json:"state"`
	EKHash  string    `json:"ekHash,omitempty"`
	BuildID string    `json:"buildID,omitempty"`
	// Target is a build assigned for an upgrade and not yet attested.
	Target       string    `json:"target,omitempty"`
	CertSerial   string    `json:"certSerial,omitempty"`
	CertNotAfter time.Time `json:"certNotAfter,omitempty"`
	EnrolledAt   time.Time `json:"enrolledAt,omitempty"`
	Reason       *Refusal  `json:"reason,omitempty"`
	// Retired says, when the build the node runs was retired, by whom,
	// when and why; the node is refused renewal until it is upgraded.
	Retired string `json:"retired,omitempty"`
}

// AuditEntry is one line of the hub's append-only audit log.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	Hash    string    `json:"hash"`
}

// NodeRequest names a node (get, revoke, fence, replace).
type NodeRequest struct {
	Name   string `json:"name"`
	Reason string `json:"reason,omitempty"`
}

// RevokeClientRequest revokes an operator client certificate.
type RevokeClientRequest struct {
	Certificate []byte `json:"certificate"` // DER
	Reason      string `json:"reason,omitempty"`
}

// RevokedClient is a revoked operator certificate.
type RevokedClient struct {
	Serial   string    `json:"serial"`
	Client   string    `json:"client"` // CN (role)
	NotAfter time.Time `json:"notAfter"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason,omitempty"`
}

// ListNodesRequest lists every node.
type ListNodesRequest struct{}

// ListNodesResponse is the node registry.
type ListNodesResponse struct {
	Nodes []Node `json:"nodes"`
}

// AuditRequest pages through the audit log from a sequence number.
type AuditRequest struct {
	From  uint64 `json:"from"`
	Limit int    `json:"limit"`
}

// AuditResponse is a page of the audit log.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
	// ChainOK says the hash chain over the whole log verified.
	ChainOK bool `json:"chainOK"`
	// Head is the newest entry's sequence number and hash when ChainOK
	// (what a sealed acceptance record anchors); a page from past the
	// end reads it alone.
	Head *AuditHead `json:"head,omitempty"`
}

// AuditHead is the audit chain's newest entry.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// SealRequest appends a cluster's acceptance record (JSON, as written to
// the build's acceptance.json) to the audit chain; Signature is the
// artifact key's detached signature over it.
type SealRequest struct {
	Record    []byte `json:"record"`
	Signature []byte `json:"signature"`
}

// Sealed is the audit entry that holds the seal.
type Sealed struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// RecordSHA256 is the digest of the record the hub checked.
	RecordSHA256 string `json:"recordSHA256"`
}

// EtcdSnapshotsRequest lists the etcd snapshots the hub keeps.
type EtcdSnapshotsRequest struct{}

// TakeEtcdSnapshotRequest asks the hub for an etcd snapshot now, beside
// its hourly ones.
type TakeEtcdSnapshotRequest struct{}

// EtcdSnapshot is one etcd snapshot the hub keeps on the master's data
// partition (/data/kubedos/etcd-snapshots): its file name, the member it
// came from, when, its size, the SHA-256 of the file and the etcd
// revision it holds (0: unknown).
type EtcdSnapshot struct {
	Name     string    `json:"name"`
	Member   string    `json:"member"`
	Taken    time.Time `json:"taken"`
	Bytes    int64     `json:"bytes"`
	SHA256   string    `json:"sha256"`
	Revision int64     `json:"revision,omitempty"`
}

// EtcdSnapshots is what the hub keeps: Kept false when it takes none
// where it serves (off the master, or a cluster without etcd); the
// snapshots newest first, at most 100.
type EtcdSnapshots struct {
	Kept      bool           `json:"kept"`
	Snapshots []EtcdSnapshot `json:"snapshots"`
}

// WindowRequest opens the enrollment window for a while.
type WindowRequest struct {
	Seconds int64 `json:"seconds"`
}

// WindowResponse says until when it is open.
type WindowResponse struct {
	Until time.Time `json:"until"`
}

// RegisterEKRequest records an EK hash the deploy step saw for a node.
type RegisterEKRequest struct {
	Name   string `json:"name"`
	EKHash string `json:"ekHash"`
}

// AssignBuildRequest lets a node run a signed build (an upgrade).
type AssignBuildRequest struct {
	Name      string `json:"name"`
	Manifest  []byte `json:"manifest"`
	Signature []byte `json:"signature"`
}

// RetireBuildRequest retires a build: a build-id as nodes report it (a role
// image) or a signed build's build-id (all its role images).
type RetireBuildRequest struct {
	BuildID string `json:"buildID"`
	Reason  string `json:"reason"`
}

// RetiredBuild is a retired build.
type RetiredBuild struct {
	BuildID string    `json:"buildID"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	By      string    `json:"by"`
}

// ConsoleLoginRequest asks the hub for a one-time link into the web
// console it serves on the master. Role is the role the session gets: the
// caller's own when empty, and never more than it.
type ConsoleLoginRequest struct {
	Role string `json:"role,omitempty"`
}

// ConsoleLogin is a one-time login link: Token opens one session at URL
// (URL + "/login?t=" + Token) acting as Operator with Role, once, until
// ExpiresAt.
type ConsoleLogin struct {
	Token     string    `json:"token"`
	URL       string    `json:"url"`
	Operator  string    `json:"operator"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Empty is an empty response.
type Empty struct{}

// AdminServer is implemented by the hub.
type AdminServer interface {
	ListNodes(context.Context, *ListNodesRequest) (*ListNodesResponse, error)
	GetNode(context.Context, *NodeRequest) (*Node, error)
	Revoke(context.Context, *NodeRequest) (*Node, error)
	Fence(context.Context, *NodeRequest) (*Node, error)
	Replace(context.Context, *NodeRequest) (*Node, error)
	Audit(context.Context, *AuditRequest) (*AuditResponse, error)
	OpenWindow(context.Context, *WindowRequest) (*WindowResponse, error)
	RegisterEK(context.Context, *RegisterEKRequest) (*Empty, error)
	AssignBuild(context.Context, *AssignBuildRequest) (*Node, error)
	RevokeClient(context.Context, *RevokeClientRequest) (*RevokedClient, error)
	RetireBuild(context.Context, *RetireBuildRequest) (*RetiredBuild, error)
	Seal(context.Context, *SealRequest) (*Sealed, error)
	ConsoleLogin(context.Context, *ConsoleLoginRequest) (*ConsoleLogin, error)
	EtcdSnapshots(context.Context, *EtcdSnapshotsRequest) (*EtcdSnapshots, error)
	TakeEtcdSnapshot(context.Context, *TakeEtcdSnapshotRequest) (*EtcdSnapshot, error)
}

// RegisterAdmin serves impl on s.
func RegisterAdmin(s *grpc.Server, impl AdminServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: AdminService,
		HandlerType: (*AdminServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(AdminService, "ListNodes", AdminServer.ListNodes),
			unary(AdminService, "GetNode", AdminServer.GetNode),
			unary(AdminService, "Revoke", AdminServer.Revoke),
			unary(AdminService, "Fence", AdminServer.Fence),
			unary(AdminService, "Replace", AdminServer.Replace),
			unary(AdminService, "Audit", AdminServer.Audit),
			unary(AdminService, "OpenWindow", AdminServer.OpenWindow),
			unary(AdminService, "RegisterEK", AdminServer.RegisterEK),
			unary(AdminService, "AssignBuild", AdminServer.AssignBuild),
			unary(AdminService, "RevokeClient", AdminServer.RevokeClient),
			unary(AdminService, "RetireBuild", AdminServer.RetireBuild),
			unary(AdminService, "Seal", AdminServer.Seal),
			unary(AdminService, "ConsoleLogin", AdminServer.ConsoleLogin),
			unary(AdminService, "EtcdSnapshots", AdminServer.EtcdSnapshots),
			unary(AdminService, "TakeEtcdSnapshot", AdminServer.TakeEtcdSnapshot),
		},
	}, impl)
}

// AdminClient calls the hub's admin service.
type AdminClient struct{ cc grpc.ClientConnInterface }

// NewAdminClient wraps a connection made with DialOptions and a client certificate.
func NewAdminClient(cc grpc.ClientConnInterface) *AdminClient { return &AdminClient{cc} }

func (c *AdminClient) ListNodes(ctx context.Context) (*ListNodesResponse, error) {
	return invoke[ListNodesResponse](ctx, c.cc, "/"+AdminService+"/ListNodes", &ListNodesRequest{})
}

func (c *AdminClient) GetNode(ctx context.Context, name string) (*Node, error) {
	return invoke[Node](ctx, c.cc, "/"+AdminService+"/GetNode", &NodeRequest{Name: name})
}

func (c *AdminClient) Revoke(ctx context.Context, name, reason string) (*Node, error) {
	return invoke[Node](ctx, c.cc, "/"+AdminService+"/Revoke", &NodeRequest{Name: name, Reason: reason})
}

func (c *AdminClient) Fence(ctx context.Context, name, reason string) (*Node, error) {
	return invoke[Node](ctx, c.cc, "/"+AdminService+"/Fence", &NodeRequest{Name: name, Reason: reason})
}

func (c *AdminClient) Replace(ctx context.Context, name string) (*Node, error) {
	return invoke[Node](ctx, c.cc, "/"+AdminService+"/Replace", &NodeRequest{Name: name})
}

func (c *AdminClient) AssignBuild(ctx context.Context, name string, manifest, signature []byte) (*Node, error) {
	return invoke[Node](ctx, c.cc, "/"+AdminService+"/AssignBuild", &AssignBuildRequest{Name: name, Manifest: manifest, Signature: signature})
}

func (c *AdminClient) RevokeClient(ctx context.Context, der []byte, reason string) (*RevokedClient, error) {
	return invoke[RevokedClient](ctx, c.cc, "/"+AdminService+"/RevokeClient", &RevokeClientRequest{Certificate: der, Reason: reason})
}

func (c *AdminClient) RetireBuild(ctx context.Context, buildID, reason string) (*RetiredBuild, error) {
	return invoke[RetiredBuild](ctx, c.cc, "/"+AdminService+"/RetireBuild", &RetireBuildRequest{BuildID: buildID, Reason: reason})
}

// ConsoleLogin asks for a one-time login link into the web console the
// hub serves on the master, acting as the caller with role (empty: the
// caller's own).
func (c *AdminClient) ConsoleLogin(ctx context.Context, role string) (*ConsoleLogin, error) {
	return invoke[ConsoleLogin](ctx, c.cc, "/"+AdminService+"/ConsoleLogin", &ConsoleLoginRequest{Role: role})
}

// Seal appends a signed acceptance record to the hub's audit chain.
func (c *AdminClient) Seal(ctx context.Context, record, signature []byte) (*Sealed, error) {
	return invoke[Sealed](ctx, c.cc, "/"+AdminService+"/Seal", &SealRequest{Record: record, Signature: signature})
}

// EtcdSnapshots lists the etcd snapshots the hub keeps (reader).
func (c *AdminClient) EtcdSnapshots(ctx context.Context) (*EtcdSnapshots, error) {
	return invoke[EtcdSnapshots](ctx, c.cc, "/"+AdminService+"/EtcdSnapshots", &EtcdSnapshotsRequest{})
}

// TakeEtcdSnapshot has the hub take an etcd snapshot now and keep it
// with its hourly ones (operator).
func (c *AdminClient) TakeEtcdSnapshot(ctx context.Context) (*EtcdSnapshot, error) {
	return invoke[EtcdSnapshot](ctx, c.cc, "/"+AdminService+"/TakeEtcdSnapshot", &TakeEtcdSnapshotRequest{})
}

// AuditHead reads the audit chain's head alone (a page from past its end).
func (c *AdminClient) AuditHead(ctx context.Context) (*AuditResponse, error) {
	return invoke[AuditResponse](ctx, c.cc, "/"+AdminService+"/Audit", &AuditRequest{From: math.MaxUint64, Limit: 1})
}

func (c *AdminClient) Audit(ctx context.Context, from uint64, limit int) (*AuditResponse, error) {
	return invoke[AuditResponse](ctx, c.cc, "/"+AdminService+"/Audit", &AuditRequest{From: from, Limit: limit})
}

func (c *AdminClient) OpenWindow(ctx context.Context, d time.Duration) (*WindowResponse, error) {
	return invoke[WindowResponse](ctx, c.cc, "/"+AdminService+"/OpenWindow", &WindowRequest{Seconds: int64(d / time.Second)})
}

func (c *AdminClient) RegisterEK(ctx context.Context, name, ekHash string) error {
	_, err := invoke[Empty](ctx, c.cc, "/"+AdminService+"/RegisterEK", &RegisterEKRequest{Name: name, EKHash: ekHash})
	return err
}
