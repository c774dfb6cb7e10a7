package kubeplan

import (
	"slices"

	"github.com/kubedos/kubedos/internal/spec"
)

// componentPackages are the Debian packages a component needs in its
// role's root: the lock adds them to every role that runs the component
// (lock.Requests), so a booted node needs only configuration.
//
// etcd is Debian's. The kubelet runs pods through containerd and runc,
// wires them with the CNI plugins (bridge, host-local, portmap from
// CNIBinDir), and its sandboxes run the pause image, which the build makes
// from catatonit (a static init). kube-proxy in nftables mode drives the
// nft binary (sigs.k8s.io/knftables); it clears conntrack entries over
// netlink, so it needs no conntrack tool. Load balancers run Debian's
// haproxy and keepalived.
var componentPackages = map[Component][]string{
	Etcd:       {"etcd-server"},
	Kubelet:    {"catatonit", "containerd", "containernetworking-plugins", "runc"},
	Proxy:      {"nftables"},
	HAProxy:    {"haproxy"},
	Keepalived: {"keepalived"},
}

// Packages is the sorted set of Debian packages components need.
func Packages(cs []Component) []string {
	var out []string
	for _, c := range cs {
		for _, p := range componentPackages[c] {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RolePackages is what lock.Requests adds for role in cluster s: the
// packages of its components, none when Kubernetes is disabled.
func RolePackages(s *spec.ClusterSpec, role spec.Role) []string {
	if !s.Workloads.Kubernetes.Enabled {
		return nil
	}
	return Packages(ComponentsFor(s, role))
}

// Kube is the multicall binary's name in BinDir; each component it runs
// is a symbolic link to it (the binary dispatches on argv[0]).
const Kube = "kube"

// Kubectl is the client linked on control-plane roles, for an operator
// debugging through the node API.
const Kubectl = "kubectl"

// Links is the names in BinDir a role root links to Kube: each of the
// role's components the multicall binary runs (etcd, haproxy and
// keepalived are Debian's), and kubectl where the API server runs. None
// means the role needs no Kube.
func Links(cs []Component) []string {
	var out []string
	for _, c := range cs {
		if c != Etcd && !debianUnit(c) {
			out = append(out, string(c))
		}
	}
	if slices.Contains(cs, APIServer) {
		out = append(out, Kubectl)
	}
	return out
}

// Reloads says whether a change of c's configuration is applied by a
// reload rather than a restart: haproxy (master-worker) hands its
// listeners to new workers and lets the old ones finish their
// connections, and keepalived re-reads its configuration keeping its VRRP
// state. A restart of either would cut every API connection through the
// VIP.
func Reloads(c Component) bool { return debianUnit(c) }

// DebianEtcdUnit is the unit etcd-server installs (and enables); etcd
// roots mask it, since UnitName(Etcd) runs etcd with the plan's flags.
const DebianEtcdUnit = "etcd.service"

// ContainerdConfigFile is where ContainerdConfig goes on kubelet roles.
const ContainerdConfigFile = "/etc/containerd/config.toml"

// ImageArchive is the path of an image's OCI archive in a role root.
func ImageArchive(name string) string { return ImageDir + "/" + name + ".tar" }

// Bridged pod traffic must pass netfilter on kubelet roles: a pod asking a
// Service whose endpoint is a pod on the same node (the cluster DNS, most
// often) has its request DNATed by kube-proxy on the way in, but the
// endpoint answers it over the cni0 bridge directly; without br_netfilter
// that answer skips conntrack, keeps the endpoint's address, and the
// asking pod drops it. systemd-modules-load loads the module at boot and
// systemd-sysctl (ordered after it) turns the hook on.
const (
	BridgeNetfilterModulesFile = "/etc/modules-load.d/kubedos-kubernetes.conf"
	BridgeNetfilterSysctlFile  = "/etc/sysctl.d/90-kubedos-kubernetes.conf"
	BridgeNetfilterModules     = "# kubedos: kube-proxy's Service NAT for pods on one bridge (kubeplan.BridgeNetfilterModules)\nbr_netfilter\n"
	BridgeNetfilterSysctl      = "# kubedos: bridged pod traffic passes nftables, so Service replies are un-NATed\n" +
		"net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
)
