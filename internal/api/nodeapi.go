package api

import (
	"context"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/wg"
	"google.golang.org/grpc"
)

// NodeService is the API of kubedosd on every node (DESIGN.md §2): API-only
// management over mTLS, no SSH. The server's certificate is the node's
// enrollment certificate (SAN = node name); a caller presents an operator
// certificate from the cluster CA (admin, operator or reader), checked
// against the revocation list the node fetches from the hub. Nodes are not
// callers.
const NodeService = "kubedos.node.v1.Node"

// NodeAPIPort is where kubedosd serves NodeService once enrolled.
const NodeAPIPort = 7444

// NodeMetricsPort is where kubedosd serves /metrics (Prometheus text
// format) over TLS once enrolled; any cluster certificate that is not
// revoked may read it.
const NodeMetricsPort = 7445

// HubPort is where a hub listens by default, on an operator machine or on
// the master that keeps it.
const HubPort = 7443

// HubMetricsPort is where a hub serves /metrics (Prometheus text format,
// TLS, reader certificates and above); the baseline firewall keeps it off
// the LAN, so Prometheus scrapes it over wg-observability.
const HubMetricsPort = 7446

// DashboardsPort is where kubedosd serves the cluster's dashboards (HTML
// rendered from Prometheus, internal/dashboards) over TLS with the node's
// certificate to any cluster certificate of role reader or above: on the
// grafana node, or on the prometheus node when the spec has none.
const DashboardsPort = 7447

// ConsolePort is where the hub on the master serves the web console
// (HTTPS; operators log in with their cluster certificate or a one-time
// link minted by the hub's ConsoleLogin). The baseline firewall opens it
// from the LAN on the master only, like HubPort.
const ConsolePort = 8443

// HubServerName is the DNS name in the hub's TLS certificate; nodes and
// operators check it against the cluster CA.
const HubServerName = pki.HubServerName

// Bounds of the node API's answers: a read never returns more than this,
// whatever was asked.
const (
	MaxLogLines     = 5000
	DefaultLogLines = 200
	// MaxLogMessageBytes cuts one journal or kernel message.
	MaxLogMessageBytes = 8 << 10
	// MaxLogsBytes bounds the messages of one Logs answer.
	MaxLogsBytes = 8 << 20
	// MaxConfigBytes bounds a node configuration document.
	MaxConfigBytes = 64 << 10
	// UpgradeChunkBytes is the payload carried by one UpgradeChunk.
	UpgradeChunkBytes = 1 << 20
)

// NodeVersionRequest asks what the node runs.
type NodeVersionRequest struct{}

// NodeVersion is what the node booted and which kubedosd answers.
type NodeVersion struct {
	Node     string `json:"node"`
	Role     string `json:"role,omitempty"`
	BuildID  string `json:"buildID"`
	Slot     string `json:"slot"`
	RootHash string `json:"rootHash"`
	// Kubedosd is the daemon's version; Revision its source revision.
	Kubedosd  string `json:"kubedosd"`
	Revision  string `json:"revision,omitempty"`
	GoVersion string `json:"goVersion"`
	// Boot is the A/B state: which entry booted, whether it is still on
	// trial, and upgrades the boot loader rolled back.
	Boot *BootState `json:"boot,omitempty"`
	// DataID is a random identifier kubedosd writes once on the data
	// partition: it stays the same for as long as the data survives.
	DataID string `json:"dataID,omitempty"`
}

// HealthRequest asks for the node's health checks. Pods asks a kubelet
// node to list its pods' readiness too (one more question to the API
// server, so only when asked: a rolling upgrade waits on it).
type HealthRequest struct {
	Pods bool `json:"pods,omitempty"`
}

// PodReadiness is one pod bound to the node, as the API server says.
type PodReadiness struct {
	Name  string `json:"name"` // namespace/name
	Ready bool   `json:"ready"`
}

// HealthCheck is one check. A critical check that fails makes the node
// unhealthy; the others are reported only.
type HealthCheck struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Critical bool   `json:"critical"`
	Detail   string `json:"detail,omitempty"`
}

// Health is the node's health: every check, systemd's overall state and the
// failed units.
type Health struct {
	Healthy     bool          `json:"healthy"`
	SystemState string        `json:"systemState"`
	FailedUnits []string      `json:"failedUnits"`
	Checks      []HealthCheck `json:"checks"`
	// Pods, when asked for on a kubelet node: its pods that are running
	// or starting (not finished, not being deleted).
	Pods []PodReadiness `json:"pods,omitempty"`
}

// ServicesRequest lists the node's systemd services.
type ServicesRequest struct{}

// Unit is a systemd unit and its state, as systemctl reports it.
type Unit struct {
	Name        string `json:"name"`
	Load        string `json:"load"`   // loaded, not-found, masked, error
	Active      string `json:"active"` // active, inactive, failed, activating…
	Sub         string `json:"sub"`    // running, exited, dead…
	Description string `json:"description,omitempty"`
	// Restartable: an operator may restart it (one of the role's own
	// services); set by Services only.
	Restartable bool `json:"restartable,omitempty"`
}

// Services lists every service unit systemd knows.
type Services struct {
	Units []Unit `json:"units"`
}

// RestartServiceRequest names a service to restart.
type RestartServiceRequest struct {
	Name string `json:"name"`
}

// LogsRequest reads the journal: the last Lines entries (DefaultLogLines
// when 0, at most MaxLogLines) of Unit (every unit when empty), not older
// than Since when set.
type LogsRequest struct {
	Unit  string    `json:"unit,omitempty"`
	Lines int       `json:"lines,omitempty"`
	Since time.Time `json:"since,omitzero"`
}

// LogEntry is one journal entry.
type LogEntry struct {
	Time       time.Time `json:"time"`
	Unit       string    `json:"unit,omitempty"`
	Identifier string    `json:"identifier,omitempty"`
	PID        int       `json:"pid,omitempty"`
	Priority   int       `json:"priority"`
	Message    string    `json:"message"`
	// Truncated says Message was cut at MaxLogMessageBytes.
	Truncated bool `json:"truncated,omitempty"`
}

// Logs is a bounded page of the journal, oldest first.
type Logs struct {
	Entries []LogEntry `json:"entries"`
	// Lines is the bound that applied.
	Lines int `json:"lines"`
	// Omitted counts the oldest entries left out to keep the answer under
	// MaxLogsBytes.
	Omitted int `json:"omitted,omitempty"`
}

// DmesgRequest reads the kernel ring buffer: the last Lines messages
// (DefaultLogLines when 0, at most MaxLogLines).
type DmesgRequest struct {
	Lines int `json:"lines,omitempty"`
}

// KernelMessage is one message of the kernel ring buffer.
type KernelMessage struct {
	// Seconds since boot.
	Seconds   float64 `json:"seconds"`
	Facility  string  `json:"facility,omitempty"`
	Level     string  `json:"level,omitempty"`
	Message   string  `json:"message"`
	Truncated bool    `json:"truncated,omitempty"`
}

// Dmesg is the tail of the kernel ring buffer, oldest first.
type Dmesg struct {
	Messages []KernelMessage `json:"messages"`
	Lines    int             `json:"lines"`
}

// PowerRequest asks for a reboot or a shutdown.
type PowerRequest struct{}

// Power says what will happen and when: the node answers first and acts
// after a short delay, so the answer reaches the caller.
type Power struct {
	Action string    `json:"action"` // reboot, poweroff
	At     time.Time `json:"at"`
}

// ConfigGetRequest reads the node's configuration document.
type ConfigGetRequest struct{}

// NodeConfigDoc is the node's configuration document as stored on the
// state partition, in canonical form.
type NodeConfigDoc struct {
	// Present is false when the node has never been configured; Document
	// is then the empty configuration.
	Present  bool   `json:"present"`
	Document string `json:"document"`
	SHA256   string `json:"sha256"`
}

// ConfigApplyRequest applies a configuration document (JSON). DryRun
// validates it and answers the diff without changing anything.
type ConfigApplyRequest struct {
	Document string `json:"document"`
	DryRun   bool   `json:"dryRun,omitempty"`
}

// ConfigApplied is the outcome of ConfigApply.
type ConfigApplied struct {
	DryRun bool `json:"dryRun"`
	// Changed says the document differs from the stored one.
	Changed bool `json:"changed"`
	// Diff is a unified diff from the stored to the requested document
	// (canonical forms); empty when unchanged.
	Diff string `json:"diff"`
	// SHA256 is the hash of the requested document's canonical form.
	SHA256 string `json:"sha256"`
}

// PlanesRequest asks for the node's WireGuard planes.
type PlanesRequest struct{}

// Planes is the node's WireGuard planes as its kernel reports them, with
// when the hub last told it who its peers are.
type Planes struct {
	// Joined is when the hub last answered the node's join (zero: never).
	Joined time.Time `json:"joined,omitzero"`
	// Error is the last join's or apply's failure.
	Error      string      `json:"error,omitempty"`
	Interfaces []wg.Status `json:"interfaces"`
}

// DriftRequest asks what differs from the applied configuration.
type DriftRequest struct{}

// DriftItem is one difference between what the node should hold and what
// it holds.
type DriftItem struct {
	// Path is a file, "hostname" or "sysctl:<key>".
	Path string `json:"path"`
	// Kind is modified, missing, unexpected, invalid or writable.
	Kind     string `json:"kind"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Drift lists every difference; Clean says there is none.
type Drift struct {
	Clean bool        `json:"clean"`
	Items []DriftItem `json:"items"`
}

// LogStream is the server side of Follow.
type LogStream interface {
	Context() context.Context
	Send(*LogEntry) error
}

// NodeServer is implemented by kubedosd.
type NodeServer interface {
	Version(context.Context, *NodeVersionRequest) (*NodeVersion, error)
	Health(context.Context, *HealthRequest) (*Health, error)
	Services(context.Context, *ServicesRequest) (*Services, error)
	RestartService(context.Context, *RestartServiceRequest) (*Unit, error)
	Logs(context.Context, *LogsRequest) (*Logs, error)
	// Follow sends the last Lines entries, then every new one until the
	// caller goes away.
	Follow(*LogsRequest, LogStream) error
	Dmesg(context.Context, *DmesgRequest) (*Dmesg, error)
	Reboot(context.Context, *PowerRequest) (*Power, error)
	Shutdown(context.Context, *PowerRequest) (*Power, error)
	ConfigGet(context.Context, *ConfigGetRequest) (*NodeConfigDoc, error)
	ConfigApply(context.Context, *ConfigApplyRequest) (*ConfigApplied, error)
	Drift(context.Context, *DriftRequest) (*Drift, error)
	Planes(context.Context, *PlanesRequest) (*Planes, error)
	// Upgrade receives a build for the idle slot; it answers once the slot
	// and its boot entry are written (or the payload is refused).
	Upgrade(UpgradeStream) (*UpgradeResult, error)
	Rollback(context.Context, *RollbackRequest) (*UpgradeResult, error)
	// TakeOverHub makes a master serve the cluster's hub from now on.
	TakeOverHub(context.Context, *HubHandoff) (*HubHandoffResult, error)
	// EtcdMembers lists the etcd cluster through the node's own member;
	// EtcdRemoveMember removes a member through it.
	EtcdMembers(context.Context, *EtcdMembersRequest) (*EtcdMembers, error)
	EtcdRemoveMember(context.Context, *EtcdRemoveMemberRequest) (*EtcdMembers, error)
	// EtcdRestore replaces the node's etcd member's data with a snapshot
	// it receives; it answers once etcd was started on it.
	EtcdRestore(EtcdRestoreStream) (*EtcdRestoreResult, error)
}

// NodeMethods lists NodeService's methods, unary and streaming: a server
// that authorizes per method checks it covers each one.
var NodeMethods = []string{"Version", "Health", "Services", "RestartService", "Logs", "Follow", "Dmesg",
	"Reboot", "Shutdown", "ConfigGet", "ConfigApply", "Drift", "Planes", "Upgrade", "Rollback", "TakeOverHub",
	"EtcdMembers", "EtcdRemoveMember", "EtcdRestore"}

var (
	followDesc  = grpc.StreamDesc{StreamName: "Follow", ServerStreams: true}
	upgradeDesc = grpc.StreamDesc{StreamName: "Upgrade", ClientStreams: true}
)

// RegisterNode serves impl on s.
func RegisterNode(s *grpc.Server, impl NodeServer) {
	follow := followDesc
	follow.Handler = func(srv any, stream grpc.ServerStream) error {
		req := new(LogsRequest)
		if err := stream.RecvMsg(req); err != nil {
			return err
		}
		return srv.(NodeServer).Follow(req, logStream{stream})
	}
	up := upgradeDesc
	up.Handler = func(srv any, stream grpc.ServerStream) error {
		res, err := srv.(NodeServer).Upgrade(upgradeStream{stream})
		if err != nil {
			return err
		}
		return stream.SendMsg(res)
	}
	restore := etcdRestoreDesc
	restore.Handler = func(srv any, stream grpc.ServerStream) error {
		res, err := srv.(NodeServer).EtcdRestore(etcdRestoreStream{stream})
		if err != nil {
			return err
		}
		return stream.SendMsg(res)
	}
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: NodeService,
		HandlerType: (*NodeServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(NodeService, "Version", NodeServer.Version),
			unary(NodeService, "Health", NodeServer.Health),
			unary(NodeService, "Services", NodeServer.Services),
			unary(NodeService, "RestartService", NodeServer.RestartService),
			unary(NodeService, "Logs", NodeServer.Logs),
			unary(NodeService, "Dmesg", NodeServer.Dmesg),
			unary(NodeService, "Reboot", NodeServer.Reboot),
			unary(NodeService, "Shutdown", NodeServer.Shutdown),
			unary(NodeService, "ConfigGet", NodeServer.ConfigGet),
			unary(NodeService, "ConfigApply", NodeServer.ConfigApply),
			unary(NodeService, "Drift", NodeServer.Drift),
			unary(NodeService, "Planes", NodeServer.Planes),
			unary(NodeService, "Rollback", NodeServer.Rollback),
			unary(NodeService, "TakeOverHub", NodeServer.TakeOverHub),
			unary(NodeService, "EtcdMembers", NodeServer.EtcdMembers),
			unary(NodeService, "EtcdRemoveMember", NodeServer.EtcdRemoveMember),
		},
		Streams: []grpc.StreamDesc{follow, up, restore},
	}, impl)
}

type logStream struct{ grpc.ServerStream }

func (s logStream) Send(e *LogEntry) error { return s.SendMsg(e) }

// MaxHubStateBytes bounds the hub state a handoff carries (one message).
const MaxHubStateBytes = MaxMessageBytes - 1<<20

// HubHandoff hands the cluster's hub to a master's kubedosd: everything
// `kubedos hub serve` runs with, and its state. The CA key travels only
// inside the node API's mutual TLS; the master seals it to its TPM.
type HubHandoff struct {
	// CACert and CAKey are the cluster CA (PEM; the key PKCS #8). The
	// certificate must be the one baked into the node's image.
	CACert []byte `json:"caCert"`
	CAKey  []byte `json:"caKey"`
	// Spec is the cluster spec (YAML) the hub's policy reads.
	Spec []byte `json:"spec"`
	// Manifest and Signature are the signed manifest of the build the
	// nodes must run; the node checks the signature with its image's key.
	Manifest  []byte `json:"manifest"`
	Signature []byte `json:"signature"`
	// EKCAs is the PEM bundle of EK certificate CAs, if the policy has one.
	EKCAs []byte `json:"ekCAs,omitempty"`
	// State is the hub's bbolt file, taken while no hub served it.
	State []byte `json:"state"`
	// Hosts are extra names and addresses for the hub's TLS certificate.
	Hosts []string `json:"hosts,omitempty"`
	// KubeKeys are the Kubernetes CAs and service-account key (relative
	// file name → PEM, pki.ReadKubeFiles), if the key ceremony made them;
	// sealed to the master's TPM like CAKey.
	KubeKeys map[string][]byte `json:"kubeKeys,omitempty"`
}

// HubHandoffResult is what the master serves from now on.
type HubHandoffResult struct {
	Node   string `json:"node"`
	Listen string `json:"listen"`
	// Nodes is how many node records the state held.
	Nodes int `json:"nodes"`
	// Sealed says the CA key is sealed to the master's TPM.
	Sealed bool `json:"sealed"`
	// AuditHead is the hash of the audit chain's last entry after the
	// takeover was recorded.
	AuditSeq  uint64 `json:"auditSeq"`
	AuditHead string `json:"auditHead"`
}

// TakeOverHub hands the hub to the node (a master); admin only.
func (c *NodeClient) TakeOverHub(ctx context.Context, h *HubHandoff) (*HubHandoffResult, error) {
	return invoke[HubHandoffResult](ctx, c.cc, nodeMethod("TakeOverHub"), h)
}
