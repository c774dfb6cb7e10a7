package kubeplan

import (
	"fmt"
	"strings"
)

// UnitName is a component's systemd unit. Debian's etcd-server ships its
// own etcd.service (masked in the image: it would start with Debian's
// defaults), so ours has another name.
func UnitName(c Component) string {
	if c == Etcd {
		return "kubedos-etcd.service"
	}
	// haproxy and keepalived run from Debian's units (DropIn).
	return string(c) + ".service"
}

// UnitNames is the units of components, for the node API's allow-list of
// services an operator may restart.
func UnitNames(cs []Component) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, UnitName(c))
	}
	return out
}

// Unit is the unit file baked into a role root for c ("" for a component
// that runs from Debian's unit: DropIn). It is not enabled:
// kubedosd's kubernetes controller starts it once the node's certificates
// and EnvFile exist, at every boot, and the condition keeps a hand start
// from running it without them.
func Unit(c Component) string {
	if debianUnit(c) {
		return ""
	}
	exec := BinDir + "/" + string(c)
	after := "network-online.target kubedosd.service"
	var extra []string
	typ := "simple"
	switch c {
	case Etcd:
		exec = "/usr/bin/etcd"
		typ = "notify"
		// etcd first for the CPU and the disk on a node it shares with
		// an API server: raft's heartbeats must not wait behind the API
		// server's start (three stacked members starved each other's
		// heartbeats under emulation in the HA drill runs).
		extra = append(extra, "LimitNOFILE=65536", "Nice=-10", "CPUWeight=1000",
			"IOSchedulingClass=best-effort", "IOSchedulingPriority=0")
	case Kubelet:
		after += " containerd.service"
		extra = append(extra, "Wants=containerd.service")
	case APIServer:
		extra = append(extra, "LimitNOFILE=65536")
	}
	var unit, service []string
	for _, e := range extra {
		if strings.HasPrefix(e, "Wants=") {
			unit = append(unit, e)
		} else {
			service = append(service, e)
		}
	}
	return fmt.Sprintf(`# kubedos: %s, started by kubedosd's kubernetes controller.
[Unit]
Description=Kubernetes %s (kubedos)
After=%s
ConditionPathExists=%s
%s
[Service]
Type=%s
EnvironmentFile=%s
ExecStart=%s $ARGS
Restart=always
RestartSec=5
%s
`, c, c, after, EnvFile(c), lines(unit), typ, EnvFile(c), exec, lines(service))
}

func lines(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return strings.Join(ss, "\n") + "\n"
}

// ContainerdConfig is /etc/containerd/config.toml on kubelet roles:
// images and snapshots on the data partition, the baked pause image as the
// sandbox, runc under systemd cgroups, the CNI network kubedosd writes.
func ContainerdConfig() string {
	return fmt.Sprintf(`# kubedos: containerd for the kubelet (docs/kubernetes.md)
version = 2
root = %q
state = "/run/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
`, ContainerdRoot, PauseImage, CNIBinDir, CNIDir)
}
