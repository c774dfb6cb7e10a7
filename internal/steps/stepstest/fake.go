// Package stepstest serves a fake hub and fake node APIs over mutual TLS
// on loopback, the way the convergence steps meet them: tests of the
// steps, of the cluster library and of the CLI share it.
package stepstest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
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
