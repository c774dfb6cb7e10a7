// Package stepstest serves a fake hub and fake node APIs over mutual TLS
// on loopback, the way the convergence steps meet them: tests of the
// steps, of the cluster library and of the CLI share it.
package stepstest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Hub answers the admin calls the steps make and keeps run records.
type Hub struct {
	api.AdminServer // nil: other methods panic, which a test would see
	mu              sync.Mutex
	nodes           map[string]api.Node
	runs            []api.RunRecord
	// Calls counts GetNode calls.
	Calls int
	// ArtifactKey checks the records Seal is sent (nil: Seal refuses all);
	// Sealed holds each record sealed, in order.
	ArtifactKey ed25519.PublicKey
	Sealed      [][]byte
	// SealCalls counts Seal calls, refused or not.
	SealCalls int
	// EtcdSnaps is what EtcdSnapshots answers (nil: the hub keeps none).
	EtcdSnaps *api.EtcdSnapshots
}

// EtcdSnapshots answers EtcdSnaps.
func (h *Hub) EtcdSnapshots(context.Context, *api.EtcdSnapshotsRequest) (*api.EtcdSnapshots, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.EtcdSnaps == nil {
		return &api.EtcdSnapshots{Snapshots: []api.EtcdSnapshot{}}, nil
	}
	out := *h.EtcdSnaps
	return &out, nil
}

// AuditHeadSeq and AuditHeadHash are the fake hub's audit chain head.
const (
	AuditHeadSeq  = 41
	AuditHeadHash = "4141414141414141414141414141414141414141414141414141414141414141"
)

// Audit answers the chain head only (a page from past its end).
func (h *Hub) Audit(context.Context, *api.AuditRequest) (*api.AuditResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seq := uint64(AuditHeadSeq + len(h.Sealed))
	return &api.AuditResponse{Entries: []api.AuditEntry{}, ChainOK: true, Head: &api.AuditHead{Seq: seq, Hash: AuditHeadHash}}, nil
}

// Seal keeps a record signed by ArtifactKey, as the hub appends it.
func (h *Hub) Seal(_ context.Context, r *api.SealRequest) (*api.Sealed, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.SealCalls++
	if h.ArtifactKey == nil {
		return nil, status.Error(codes.FailedPrecondition, "no artifact key")
	}
	if err := sign.VerifyBlob(h.ArtifactKey, r.Record, r.Signature); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "acceptance record: %v", err)
	}
	h.Sealed = append(h.Sealed, r.Record)
	sum := sha256.Sum256(r.Record)
	return &api.Sealed{Seq: uint64(AuditHeadSeq + len(h.Sealed)), Hash: AuditHeadHash, RecordSHA256: hex.EncodeToString(sum[:])}, nil
}

// NewHub knows every node of s as enrolled on build.
func NewHub(s *spec.ClusterSpec, build string) *Hub {
	h := &Hub{nodes: map[string]api.Node{}}
	for _, n := range s.Topology.Nodes {
		h.nodes[n.Name] = api.Node{Name: n.Name, Role: string(n.Role), State: "enrolled", BuildID: build}
	}
	return h
}

// SetNode replaces what the hub says of a node.
func (h *Hub) SetNode(n api.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodes[n.Name] = n
}

func (h *Hub) GetNode(_ context.Context, r *api.NodeRequest) (*api.Node, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Calls++
	n, ok := h.nodes[r.Name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "node %q", r.Name)
	}
	return &n, nil
}

func (h *Hub) RecordRun(_ context.Context, r *api.RecordRunRequest) (*api.RunRecorded, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	run := r.Run
	run.Seq = uint64(len(h.runs) + 1)
	h.runs = append(h.runs, run)
	return &api.RunRecorded{Seq: run.Seq}, nil
}

func (h *Hub) ListRuns(_ context.Context, r *api.ListRunsRequest) (*api.ListRunsResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := &api.ListRunsResponse{Runs: []api.RunRecord{}}
	for i := len(h.runs) - 1; i >= 0 && (r.Limit <= 0 || len(out.Runs) < r.Limit); i-- {
		out.Runs = append(out.Runs, h.runs[i])
	}
	return out, nil
}

// Runs returns the recorded runs, oldest first.
func (h *Hub) Runs() []api.RunRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]api.RunRecord(nil), h.runs...)
}

// Node answers the node API calls the steps make: planes, and
// configuration documents kept in memory the way kubedosd keeps them.
type Node struct {
	api.NodeServer
	Name   string
	mu     sync.Mutex
	stored string // canonical document; "" never configured
	planes api.Planes
	// Applies counts applies that were not dry runs; Refuse makes
	// ConfigApply refuse every document with this message.
	Applies int
	Refuse  string
}

// NewNode is a node that joined every plane, all up.
func NewNode(name string) *Node {
	n := &Node{Name: name, planes: api.Planes{Joined: time.Now()}}
	for _, p := range spec.Planes {
		n.planes.Interfaces = append(n.planes.Interfaces, wg.Status{Plane: string(p), Interface: "wg-" + string(p), Up: true})
	}
	return n
}

// SetPlanes replaces what the node reports of its planes.
func (n *Node) SetPlanes(p api.Planes) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.planes = p
}

// Stored is the node's applied document (canonical JSON), "" if none.
func (n *Node) Stored() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stored
}

func (n *Node) Planes(context.Context, *api.PlanesRequest) (*api.Planes, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.planes
	return &p, nil
}

func (n *Node) ConfigApply(_ context.Context, r *api.ConfigApplyRequest) (*api.ConfigApplied, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.Refuse != "" {
		return nil, status.Error(codes.PermissionDenied, n.Refuse)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Document), &doc); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "config: %v", err)
	}
	canon, _ := json.MarshalIndent(doc, "", "  ") // map keys sorted: a canonical form
	out := &api.ConfigApplied{DryRun: r.DryRun, Changed: string(canon) != n.stored}
	if out.Changed {
		out.Diff = fmt.Sprintf("--- node-config.json (applied)\n+++ node-config.json (requested)\n-%s\n+%s\n", n.stored, canon)
	}
	if !r.DryRun {
		n.stored = string(canon)
		n.Applies++
	}
	return out, nil
}
