package agent

import (
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/firewall"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
)

// Baseline is the node's firewall for its role and planes (DESIGN.md §5):
// the planes trusted, their WireGuard ports and the node's own services
// (node API, metrics, and the hub on the master) open on the LAN. Before
// the first join the planes are the spec's defaults.
func Baseline(role string, ifcs []wg.Interface) firewall.Baseline {
	b := firewall.Baseline{TCPPorts: []int{api.NodeAPIPort, api.NodeMetricsPort}}
	switch spec.Role(role) {
	case spec.RoleMaster:
		b.TCPPorts = append(b.TCPPorts, api.HubPort)
	case spec.RoleControlPlane:
		// The API server authenticates every caller (client certificates
		// from the hub); operators reach it over the LAN.
		b.TCPPorts = append(b.TCPPorts, kubeplan.APIServerPort)
	case spec.RoleWorker:
		b.Pods = []string{kubeplan.PodBridge}
	}
	if len(ifcs) == 0 {
		for _, p := range spec.Planes {
			b.Planes = append(b.Planes, wg.InterfaceName(p))
			b.WireGuardPorts = append(b.WireGuardPorts, spec.DefaultPlanePorts[p])
		}
		return b
	}
	for _, ifc := range ifcs {
		b.Planes = append(b.Planes, ifc.Name)
		b.WireGuardPorts = append(b.WireGuardPorts, ifc.ListenPort)
	}
	return b
}
