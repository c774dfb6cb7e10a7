// Package plan expands a ClusterSpec into the convergence DAG of the kubedos
// design: attestation gate → enrollment → backplanes → convergence per role →
// workload bring-up → acceptance and seal. Steps carry no actions yet; later
// stages attach them by step ID.
package plan

import (
	"fmt"

	"github.com/kubedos/kubedos/internal/converge"
	"github.com/kubedos/kubedos/internal/spec"
)

// Phases, in the order of seed 004 §14 but for one swap: seed 004 puts the
// backplanes before enrollment, yet a node joins the planes with the
// certificate enrollment issues it, so enrollment comes first.
const (
	PhaseAttest    = "attestation-gate"
	PhaseEnroll    = "enrollment"
	PhaseBackplane = "backplanes"
	PhaseConverge  = "convergence"
	PhaseWorkload  = "workload-bring-up"
	PhaseSeal      = "seal-and-acceptance"
)

// Phases lists every phase in order.
var Phases = []string{PhaseAttest, PhaseEnroll, PhaseBackplane, PhaseConverge, PhaseWorkload, PhaseSeal}

// Step IDs, exported so later stages can attach actions to them.
func AttestID(node string) string           { return "attest/" + node }
func HubPlaneID(p spec.Plane) string        { return "backplane/" + string(p) + "/hub" }
func PlaneID(p spec.Plane, n string) string { return "backplane/" + string(p) + "/" + n }
func EnrollID(node string) string           { return "enroll/" + node }
func ConvergeID(r spec.Role) string         { return "converge/" + string(r) }

// Fixed step IDs.
const (
	WorkloadKubernetes    = "workload/kubernetes"
	WorkloadObservability = "workload/observability"
	WorkloadCeph          = "workload/ceph"
	WorkloadZFS           = "workload/zfs"
	Acceptance            = "acceptance"
	Seal                  = "seal"
)

// roleAfter orders convergence between roles: a role converges after the
// roles it needs (etcd before the control plane, the VIP before joins…).
var roleAfter = map[spec.Role][]spec.Role{
	spec.RoleGrafana:      {spec.RolePrometheus},
	spec.RoleControlPlane: {spec.RoleEtcd, spec.RoleLoadBalancer},
	spec.RoleWorker:       {spec.RoleControlPlane},
}

// Build expands s (validated and defaulted) into its convergence DAG.
func Build(s *spec.ClusterSpec) (*converge.Graph, error) {
	g := converge.New()
	add := func(id, phase string, deps ...string) {
		// IDs are unique by construction; an error here is a bug in this file.
		if err := g.Add(converge.Step{ID: id, Phase: phase, Deps: deps}); err != nil {
			panic(err)
		}
	}
	var master string
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RoleMaster {
			master = n.Name
		}
	}
	if master == "" {
		return nil, fmt.Errorf("plan: spec has no master node")
	}
	for _, n := range s.Topology.Nodes {
		add(AttestID(n.Name), PhaseAttest)
	}
	// An attested node enrolls: the hub signs its certificate. The master
	// enrolls first, as it keeps the hub.
	for _, n := range s.Topology.Nodes {
		deps := []string{AttestID(n.Name)}
		if n.Name != master {
			deps = append(deps, EnrollID(master))
		}
		add(EnrollID(n.Name), PhaseEnroll, deps...)
	}
	// The master is the hub of every plane; a node joins a plane with its
	// enrollment certificate once the hub side is up.
	planesOf := func(node string) []string {
		var ids []string
		for _, p := range spec.Planes {
			if node == master {
				ids = append(ids, HubPlaneID(p))
			} else {
				ids = append(ids, PlaneID(p, node))
			}
		}
		return ids
	}
	for _, p := range spec.Planes {
		add(HubPlaneID(p), PhaseBackplane, EnrollID(master))
	}
	for _, n := range s.Topology.Nodes {
		if n.Name == master {
			continue
		}
		for _, p := range spec.Planes {
			add(PlaneID(p, n.Name), PhaseBackplane, EnrollID(n.Name), HubPlaneID(p))
		}
	}
	present := map[spec.Role]bool{}
	for _, n := range s.Topology.Nodes {
		present[n.Role] = true
	}
	for _, r := range spec.Roles {
		if !present[r] {
			continue
		}
		var deps []string
		for _, n := range s.Topology.Nodes {
			if n.Role == r {
				deps = append(deps, planesOf(n.Name)...)
			}
		}
		if r != spec.RoleMaster {
			deps = append(deps, ConvergeID(spec.RoleMaster))
		}
		for _, before := range roleAfter[r] {
			if present[before] {
				deps = append(deps, ConvergeID(before))
			}
		}
		add(ConvergeID(r), PhaseConverge, deps...)
	}
	var workloads []string
	workload := func(id string, roles ...spec.Role) {
		var deps []string
		for _, r := range roles {
			if present[r] {
				deps = append(deps, ConvergeID(r))
			}
		}
		add(id, PhaseWorkload, deps...)
		workloads = append(workloads, id)
	}
	st := s.Storage
	if st.ZFS.Enabled {
		workload(WorkloadZFS, spec.RoleStorage, spec.RoleMaster)
	}
	if st.Ceph.Enabled {
		workload(WorkloadCeph, spec.RoleStorage, spec.RoleMaster)
	}
	if k := s.Workloads.Kubernetes; k.Enabled {
		workload(WorkloadKubernetes, spec.RoleEtcd, spec.RoleControlPlane, spec.RoleWorker, spec.RoleLoadBalancer)
	}
	if o := s.Workloads.Observability; o.Prometheus || o.Grafana {
		workload(WorkloadObservability, spec.RolePrometheus, spec.RoleGrafana)
	}
	// Acceptance waits for every convergence and workload; seal writes the
	// recovery anchors only for an accepted cluster.
	var all []string
	for _, r := range spec.Roles {
		if present[r] {
			all = append(all, ConvergeID(r))
		}
	}
	add(Acceptance, PhaseSeal, append(all, workloads...)...)
	add(Seal, PhaseSeal, Acceptance)
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return g, nil
}
