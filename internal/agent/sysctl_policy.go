package agent

import (
	"fmt"
	"strings"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// ErrPolicy refuses what the node's policy forbids whoever asks (a kernel
// parameter off the allow-list, a unit that reboots the machine).
var ErrPolicy = errdefs.New(errdefs.ErrPermission, "refused by the node's policy")

// The kernel parameters an operator may set through ConfigApply: an
// allow-list (issue 14, hole 1; DESIGN §11: an operator never sets a kernel
// parameter that loads or runs code). A key matches an entry segment by
// segment; "*" stands for one segment (an interface name). Each entry says
// why a node needs it; docs/security.md lists them too. Keep the two in step.
var allowedSysctls = []struct{ key, reason string }{
	{"net.ipv4.ip_forward", "routing pod and service traffic (Kubernetes, load balancers)"},
	{"net.ipv6.conf.all.forwarding", "routing pod and service traffic over IPv6"},
	{"net.ipv4.conf.*.rp_filter", "reverse-path filtering per interface (CNI plugins want loose mode)"},
	{"net.ipv4.ip_nonlocal_bind", "haproxy/keepalived binding a virtual IP the node does not hold yet"},
	{"net.ipv6.ip_nonlocal_bind", "the same for IPv6 virtual IPs"},
	{"net.ipv4.ip_local_port_range", "ephemeral ports for busy proxies"},
	{"net.bridge.bridge-nf-call-iptables", "kube-proxy and CNI bridges filter bridged IPv4 traffic"},
	{"net.bridge.bridge-nf-call-ip6tables", "the same for bridged IPv6 traffic"},
	{"net.netfilter.nf_conntrack_max", "connection tracking table size on busy nodes"},
	{"net.core.somaxconn", "listen backlog of busy servers"},
	{"net.core.netdev_max_backlog", "receive queue of busy interfaces"},
	{"net.core.rmem_max", "socket receive buffer ceiling"},
	{"net.core.wmem_max", "socket send buffer ceiling"},
	{"net.ipv4.tcp_rmem", "TCP receive buffer sizes"},
	{"net.ipv4.tcp_wmem", "TCP send buffer sizes"},
	{"net.ipv4.tcp_keepalive_time", "detecting dead peers behind load balancers"},
	{"net.ipv4.tcp_keepalive_intvl", "detecting dead peers behind load balancers"},
	{"net.ipv4.tcp_keepalive_probes", "detecting dead peers behind load balancers"},
	{"net.ipv4.neigh.default.gc_thresh1", "neighbour table size on large flat networks"},
	{"net.ipv4.neigh.default.gc_thresh2", "neighbour table size on large flat networks"},
	{"net.ipv4.neigh.default.gc_thresh3", "neighbour table size on large flat networks"},
	{"vm.swappiness", "memory pressure behaviour of workloads"},
	{"vm.overcommit_memory", "kubelet's expected overcommit policy"},
	{"vm.max_map_count", "workloads that map many regions (search engines, databases)"},
	{"kernel.panic", "reboot after a panic (kubelet's expectation), so the node comes back"},
	{"kernel.panic_on_oops", "panic (and so reboot) on an oops rather than run damaged"},
	{"kernel.pid_max", "many processes on dense nodes"},
	{"fs.inotify.max_user_watches", "file watchers of kubelet and workloads"},
	{"fs.inotify.max_user_instances", "file watchers of kubelet and workloads"},
	{"fs.file-max", "open files on busy nodes"},
}

// neverSettable are parameters that run a program, load code or lower a
// barrier against doing so: refused even if an allow-list entry matched,
// with this reason. An entry ending in "." is a prefix.
var neverSettable = []struct{ key, reason string }{
	{"kernel.core_pattern", "a leading '|' runs a program as root at every crash"},
	{"kernel.core_pipe_limit", "governs core_pattern's program"},
	{"kernel.modprobe", "the program the kernel runs as root to load a module"},
	{"kernel.usermodehelper.", "the capabilities of programs the kernel runs as root"},
	{"kernel.poweroff_cmd", "the program the kernel runs as root to power off"},
	{"kernel.hotplug", "the program the kernel runs as root for each uevent"},
	{"fs.binfmt_misc.", "registers interpreters the kernel runs for matching files"},
	{"kernel.kexec_load_disabled", "re-enabling kexec loads another kernel"},
	{"kernel.modules_disabled", "module loading must stay as the image set it"},
	{"kernel.unprivileged_bpf_disabled", "lowering it lets any user load BPF programs"},
	{"net.core.bpf_jit_", "BPF JIT hardening"},
	{"kernel.yama.ptrace_scope", "lowering it lets processes read each other's memory"},
	{"kernel.kptr_restrict", "hides kernel addresses from exploits"},
	{"fs.suid_dumpable", "core dumps of setuid programs leak their secrets"},
	{"kernel.sysrq", "magic SysRq reboots or kills from a console"},
	{"kernel.ctrl-alt-del", "reboot from a console"},
}

// sysctlRefusal says why key may not be set, or "" when it may.
func sysctlRefusal(key string) string {
	for _, n := range neverSettable {
		if key == n.key || (strings.HasSuffix(n.key, ".") && strings.HasPrefix(key, n.key)) ||
			(strings.HasSuffix(n.key, "_") && strings.HasPrefix(key, n.key)) {
			return "never settable through the API: " + n.reason
		}
	}
	for _, a := range allowedSysctls {
		if sysctlMatch(a.key, key) {
			return ""
		}
	}
	return "not on the allow-list of settable kernel parameters (docs/security.md lists them)"
}

// sysctlMatch matches key against pattern segment by segment.
func sysctlMatch(pattern, key string) bool {
	ps, ks := strings.Split(pattern, "."), strings.Split(key, ".")
	if len(ps) != len(ks) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != ks[i] {
			return false
		}
	}
	return true
}

// checkSysctlAllowed is the same rule as an error (ErrPermission class),
// for the writer itself: defence in depth behind the decoder.
func checkSysctlAllowed(key string) error {
	if why := sysctlRefusal(key); why != "" {
		return fmt.Errorf("%w: kernel parameter %s: %s", ErrPolicy, key, why)
	}
	return nil
}
