package pki

import (
	"crypto/x509"
	"fmt"
	"strings"
)

// RoleOrgPrefix prefixes the role carried in a certificate's Organization:
// "kubedos:admin", "kubedos:operator", "kubedos:reader", "kubedos:node".
// It equals sign.RoleOrgPrefix, which the key ceremony uses for the admin
// certificate (a test keeps them equal).
const RoleOrgPrefix = "kubedos:"

// Role is who a certificate speaks for. Operators are ordered admin >
// operator > reader, as in Talos: each may do everything the one below it
// may. Nodes stand apart: a node may act only on itself (see Allows).
type Role string

// The roles.
const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleReader   Role = "reader"
	RoleNode     Role = "node"
)

// OrgNode is the Organization of every node certificate.
const OrgNode = RoleOrgPrefix + string(RoleNode)

// OperatorRoles are the roles IssueClient issues, highest first.
var OperatorRoles = []Role{RoleAdmin, RoleOperator, RoleReader}

// level orders operator roles; 0 is not an operator role.
func (r Role) level() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleReader:
		return 1
	}
	return 0
}

// Covers reports whether r may do everything o may: both operator roles
// and r at least o (admin covers operator covers reader). A node covers
// nothing and is covered by nothing.
func (r Role) Covers(o Role) bool { return o.level() > 0 && r.level() >= o.level() }

// Org is the Organization value that carries r.
func (r Role) Org() string { return RoleOrgPrefix + string(r) }

// ParseRole accepts "admin", "operator", "reader" and "node".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleReader, RoleNode:
		return r, nil
	}
	return "", fmt.Errorf("%w: unknown role %q (roles: admin, operator, reader, node)", ErrNoRole, s)
}

// RoleOf reads the role a certificate carries in its Organization. Exactly
// one Organization value may have the "kubedos:" prefix and it must name a
// known role. RoleOf does not check who issued cert: call it on a
// certificate that Authenticate (or the TLS handshake) has verified.
func RoleOf(cert *x509.Certificate) (Role, error) {
	if cert == nil {
		return "", fmt.Errorf("%w: no certificate", ErrNoRole)
	}
	var found []string
	for _, o := range cert.Subject.Organization {
		if strings.HasPrefix(o, RoleOrgPrefix) {
			found = append(found, strings.TrimPrefix(o, RoleOrgPrefix))
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: certificate %q has no Organization %q<role>", ErrNoRole, cert.Subject.CommonName, RoleOrgPrefix)
	case 1:
	default:
		return "", fmt.Errorf("%w: certificate %q carries %d roles %q", ErrNoRole, cert.Subject.CommonName, len(found), found)
	}
	r, err := ParseRole(found[0])
	if err != nil {
		return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	return r, nil
}

// Action is something a hub or node API caller asks to do. The names double
// as audit actions.
type Action string

// The actions and who may take them.
const (
	// ActionRead: list and get nodes, read the audit log, status. Reader.
	ActionRead Action = "read"
	// ActionRegisterEK: record a TPM's EK hash for a node. Operator.
	ActionRegisterEK Action = "ek.register"
	// ActionOpenWindow: open or close the enrollment window. Operator.
	ActionOpenWindow Action = "window.open"
	// ActionRevoke: revoke a node's identity and certificates. Operator.
	ActionRevoke Action = "node.revoke"
	// ActionFence: revoke and stop a node. Operator.
	ActionFence Action = "node.fence"
	// ActionReplace: retire a node's identity so a new TPM may take the
	// name through the enrollment gate. Operator.
	ActionReplace Action = "node.replace"
	// ActionIssueClient: issue operator client certificates. Admin.
	ActionIssueClient Action = "client.issue"
	// ActionRevokeClient: revoke an operator client certificate. Admin.
	ActionRevokeClient Action = "client.revoke"
	// ActionRenew: a node renews its own certificate with a fresh quote.
	// Nodes only, and only for themselves (the caller checks the name).
	ActionRenew Action = "node.renew"
	// ActionReadRevocations: fetch the list of revoked serials, which node
	// APIs check their callers against. Nodes, and readers and above.
	ActionReadRevocations Action = "revocations.read"
	// ActionJoinPlanes: a node registers its WireGuard plane keys and reads
	// the interfaces it should have. Nodes only, for themselves.
	ActionJoinPlanes Action = "planes.join"
	// ActionKubeCerts: a node gets the Kubernetes certificates of its spec
	// role right after a fresh-quote renewal. Nodes only, for themselves.
	ActionKubeCerts Action = "kubernetes.issue"
	// ActionKubeAdmin: get a short-lived Kubernetes admin credential
	// (system:masters) for one's own key. Admin: it is every power over
	// the cluster's workloads.
	ActionKubeAdmin Action = "kubernetes.admin"
	// ActionObservability: the prometheus node gets its Prometheus
	// configuration and a reader certificate to scrape with. Node (and the
	// hub checks the node's spec role is prometheus).
	ActionObservability Action = "observability.config"
	// ActionRestartService: restart a systemd service through a node's API.
	// Operator.
	ActionRestartService Action = "service.restart"
	// ActionApplyConfig: apply a node's configuration document. Operator.
	ActionApplyConfig Action = "config.apply"
	// ActionRecordRun: record a convergence run at the hub. Operator.
	ActionRecordRun Action = "converge.record"
	// ActionPower: reboot or shut down a node. Admin.
	ActionPower Action = "node.power"
	// ActionUpgrade: assign a node a build, write it to the node's idle
	// slot, or roll the node back to its other slot. Admin.
	ActionUpgrade Action = "node.upgrade"
	// ActionRetireBuild: retire a build, so no node enrolls, renews or is
	// upgraded onto it. Admin.
	ActionRetireBuild Action = "build.retire"
	// ActionTakeOverHub: hand the cluster's hub (its state and the CA key)
	// to a master's kubedosd. Admin.
	ActionTakeOverHub Action = "hub.takeover"
	// ActionSeal: append a cluster's signed acceptance record to the audit
	// chain (kubedos cluster seal). Admin.
	ActionSeal Action = "cluster.seal"
	// ActionConsoleLogin: get a one-time link into the web console the hub
	// serves on the master, acting there as oneself (at most one's own
	// role). Reader: the session can do no more than the certificate.
	ActionConsoleLogin Action = "console.login"
	// ActionEtcdRemoveMember: remove a member from the cluster's etcd
	// through an etcd node's API (the member's data is gone from the
	// cluster for good). Admin.
	ActionEtcdRemoveMember Action = "etcd.member.remove"
	// ActionEtcdSnapshotTake: have the hub take an etcd snapshot now, kept
	// on the master with the hourly ones (the bytes stay there).
	// Operator.
	ActionEtcdSnapshotTake Action = "etcd.snapshot.take"
	// ActionEtcdRestore: replace an etcd member's data with a snapshot
	// through its node's API (every write since the snapshot is lost).
	// Admin.
	ActionEtcdRestore Action = "etcd.restore"
	// ActionEtcdSnapshotRead: download an etcd snapshot the hub keeps. Admin:
	// the snapshot holds every Kubernetes Secret, as an admin kubeconfig
	// reads them.
	ActionEtcdSnapshotRead Action = "etcd.snapshot.read"
)

// minRole is the lowest operator role allowed each operator action.
var minRole = map[Action]Role{
	ActionRead:             RoleReader,
	ActionRegisterEK:       RoleOperator,
	ActionOpenWindow:       RoleOperator,
	ActionRevoke:           RoleOperator,
	ActionFence:            RoleOperator,
	ActionReplace:          RoleOperator,
	ActionIssueClient:      RoleAdmin,
	ActionRevokeClient:     RoleAdmin,
	ActionReadRevocations:  RoleReader,
	ActionRestartService:   RoleOperator,
	ActionApplyConfig:      RoleOperator,
	ActionRecordRun:        RoleOperator,
	ActionPower:            RoleAdmin,
	ActionUpgrade:          RoleAdmin,
	ActionTakeOverHub:      RoleAdmin,
	ActionRetireBuild:      RoleAdmin,
	ActionKubeAdmin:        RoleAdmin,
	ActionSeal:             RoleAdmin,
	ActionConsoleLogin:     RoleReader,
	ActionEtcdRemoveMember: RoleAdmin,
	ActionEtcdSnapshotRead: RoleAdmin,
	ActionEtcdRestore:      RoleAdmin,
	ActionEtcdSnapshotTake: RoleOperator,
}

// nodeActions are the only actions a node certificate allows.
var nodeActions = map[Action]bool{ActionRenew: true, ActionReadRevocations: true, ActionJoinPlanes: true, ActionKubeCerts: true,
	ActionObservability: true}

// Allows reports whether role may take action: admin > operator > reader for
// operator actions, nodes only for node actions. Unknown roles and actions
// are denied.
func Allows(role Role, action Action) bool {
	if role == RoleNode {
		return nodeActions[action]
	}
	lvl := role.level()
	need, ok := minRole[action]
	return ok && lvl > 0 && lvl >= need.level()
}
