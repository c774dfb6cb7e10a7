package observability

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// targetGroup is one entry of a file-SD file (Prometheus's format).
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Targets are the file-SD files: one per spec node for its kubedosd job
// (the node's wg-observability address when enrolled, empty otherwise), the
// hub's (on the master, where it is kept after hand-over) and node
// exporter's (the enrolled nodes whose image has it). A name in enrolled
// that the spec does not have is an error: the registry and the spec
// disagree, and scraping a name no job verifies would be wrong.
func Targets(s *spec.ClusterSpec, enrolled []string, opt Options) (Files, error) {
	in := map[string]bool{}
	for _, name := range enrolled {
		if _, ok := s.NodeByName(name); !ok {
			return nil, fmt.Errorf("%w: enrolled node %q is not in cluster %s's spec", ErrSpec, name, s.Metadata.Name)
		}
		in[name] = true
	}
	out := Files{}
	exporters := exporterNodes(s)
	var hub, exp []targetGroup
	for _, n := range s.Topology.Nodes {
		addr, err := obsAddress(s, n)
		if err != nil {
			return nil, err
		}
		labels := map[string]string{"node": n.Name, "role": string(n.Role)}
		groups := []targetGroup{}
		if in[n.Name] {
			groups = append(groups, targetGroup{Targets: []string{net.JoinHostPort(addr.String(), strconv.Itoa(NodeMetricsPort))}, Labels: labels})
			if exporters[n.Name] {
				exp = append(exp, targetGroup{Targets: []string{net.JoinHostPort(addr.String(), strconv.Itoa(NodeExporterPort))}, Labels: labels})
			}
		}
		if n.Role == spec.RoleMaster {
			// The hub is scraped whether or not the master shows enrolled:
			// a hub that does not answer is what the alert is for.
			// No node label: the hub's series carry the node they are
			// about, and a target label would rename theirs.
			hub = append(hub, targetGroup{Targets: []string{net.JoinHostPort(addr.String(), strconv.Itoa(HubMetricsPort))}, Labels: map[string]string{}})
		}
		if out[nodeTargetFile(n.Name)], err = encodeGroups(groups); err != nil {
			return nil, err
		}
	}
	if members := kubeplan.EtcdNodes(s); len(members) > 0 {
		var etcd []targetGroup
		for _, n := range members {
			if !in[n.Name] {
				continue
			}
			addr, err := obsAddress(s, n)
			if err != nil {
				return nil, err
			}
			etcd = append(etcd, targetGroup{Targets: []string{net.JoinHostPort(addr.String(), strconv.Itoa(kubeplan.EtcdMetricsPort))},
				Labels: map[string]string{"node": n.Name, "role": string(n.Role)}})
		}
		b, err := encodeGroups(etcd)
		if err != nil {
			return nil, err
		}
		out[FileEtcd] = b
	}
	if opt.Kubernetes && s.Workloads.Kubernetes.Enabled {
		if err := kubeTargets(s, in, out); err != nil {
			return nil, err
		}
	}
	var err error
	if out[FileHubTarget], err = encodeGroups(hub); err != nil {
		return nil, err
	}
	if len(exporters) > 0 {
		if out[FileExporters], err = encodeGroups(exp); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func encodeGroups(g []targetGroup) ([]byte, error) {
	if g == nil {
		g = []targetGroup{}
	}
	slices.SortFunc(g, func(a, b targetGroup) int {
		switch {
		case a.Labels["node"] < b.Labels["node"]:
			return -1
		case a.Labels["node"] > b.Labels["node"]:
			return 1
		}
		return 0
	})
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// kubeTargets are the enrolled API servers (one file: their certificates
// share the name "kubernetes") and a file per kubelet node (each serving
// certificate names only its node), at their wg-observability addresses.
func kubeTargets(s *spec.ClusterSpec, in map[string]bool, out Files) error {
	var api []targetGroup
	for _, n := range s.Topology.Nodes {
		cs := kubeplan.ComponentsFor(s, n.Role)
		hasAPI, hasKubelet := slices.Contains(cs, kubeplan.APIServer), slices.Contains(cs, kubeplan.Kubelet)
		if !hasAPI && !hasKubelet {
			continue
		}
		addr, err := obsAddress(s, n)
		if err != nil {
			return err
		}
		labels := map[string]string{"node": n.Name, "role": string(n.Role)}
		if hasAPI && in[n.Name] {
			api = append(api, targetGroup{Targets: []string{net.JoinHostPort(addr.String(), strconv.Itoa(kubeplan.APIServerPort))}, Labels: labels})
		}
		if hasKubelet {
			groups := []targetGroup{}
			if in[n.Name] {
				groups = append(groups, targetGroup{Targets: []string{net.JoinHostPort(addr.String(), strconv.Itoa(kubeplan.KubeletPort))}, Labels: labels})
			}
			if out[kubeletTargetFile(n.Name)], err = encodeGroups(groups); err != nil {
				return err
			}
		}
	}
	b, err := encodeGroups(api)
	out[FileAPIServer] = b
	return err
}
