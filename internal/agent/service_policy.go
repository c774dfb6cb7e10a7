package agent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// Which services an operator may restart (issue 14, hole 2; DESIGN §11:
// an operator restarts the role's own services, never reboots or runs code
// as root). The build records no service list, so the agent knows each
// role's: the services the image runs for that role, and nothing else. A
// name off the list is refused with PermissionDenied before systemd is
// asked; `node services` marks the listed ones restartable.
var (
	// commonServices run on every role.
	commonServices = []string{"chrony.service", "systemd-networkd.service", "systemd-resolved.service",
		"systemd-timesyncd.service", "cron.service"}
	// servicesOfRole are the role's own workload services (issue: seed 004
	// §13: the control plane runs as systemd units); the Kubernetes units
	// are kubeplan's, so the list cannot drift from what the image carries.
	servicesOfRole = map[string][]string{
		"master":       {},
		"prometheus":   {"prometheus.service", "prometheus-node-exporter.service"},
		"grafana":      {"grafana-server.service"},
		"storage":      {"nfs-server.service"},
		"etcd":         kubeUnits(spec.RoleEtcd),
		"controlplane": kubeUnits(spec.RoleControlPlane),
		"worker":       append(kubeUnits(spec.RoleWorker), "containerd.service"),
		"loadbalancer": kubeUnits(spec.RoleLoadBalancer),
	}
)

// kubeUnits are the Kubernetes units a node of role may run (stacked etcd
// included on control-plane nodes).
func kubeUnits(role spec.Role) []string {
	stacked := &spec.ClusterSpec{}
	return kubeplan.UnitNames(kubeplan.ComponentsFor(stacked, role))
}

// roleServices is the sorted restart allow-list of a role.
func roleServices(role string) []string {
	out := append(slices.Clone(commonServices), servicesOfRole[role]...)
	slices.Sort(out)
	return slices.Compact(out)
}

// neverStartable are units that reboot, power off, switch kernels or give
// a root shell: refused whatever a list says. An entry ending in "@" is a
// template (every instance).
var neverStartable = []string{
	"systemd-reboot.service", "systemd-poweroff.service", "systemd-halt.service", "systemd-kexec.service",
	"systemd-soft-reboot.service", "debug-shell.service", "rescue.service", "emergency.service",
	"kubedos-boot-deadline.service", "getty@", "serial-getty@", "console-getty.service", "container-getty@",
	"reboot.target", "poweroff.target", "halt.target", "kexec.target", "soft-reboot.target",
	"rescue.target", "emergency.target", "ctrl-alt-del.target", "exit.target",
}

// neverRestartable says why unit may never be started by an operator, or "".
func neverRestartable(unit string) string {
	for _, n := range neverStartable {
		if unit == n || (strings.HasSuffix(n, "@") && strings.HasPrefix(unit, n)) {
			return "it reboots, powers off, switches kernels or opens a root shell"
		}
	}
	return ""
}

// UnitActions are what a unit file makes systemd do beyond running the
// service (`systemctl show`): an action on success, failure or a start
// limit, a refusal of manual starts, and units it pulls in on success or
// failure. Empty actions are "none".
type UnitActions struct {
	SuccessAction, FailureAction, StartLimitAction, JobTimeoutAction string
	RefuseManualStart                                                bool
	// Triggers are OnSuccess= and OnFailure= units.
	Triggers []string
}

// check refuses a unit whose file acts on the machine.
func (a UnitActions) check(unit string) error {
	for _, p := range []struct{ name, v string }{{"SuccessAction", a.SuccessAction}, {"FailureAction", a.FailureAction},
		{"StartLimitAction", a.StartLimitAction}, {"JobTimeoutAction", a.JobTimeoutAction}} {
		if p.v != "" && p.v != "none" {
			return fmt.Errorf("%w: %s has %s=%s: an operator may not start it", ErrPolicy, unit, p.name, p.v)
		}
	}
	if a.RefuseManualStart {
		return fmt.Errorf("%w: %s has RefuseManualStart=yes", ErrPolicy, unit)
	}
	for _, t := range a.Triggers {
		if why := neverRestartable(t); why != "" {
			return fmt.Errorf("%w: %s pulls in %s on success or failure: %s", ErrPolicy, unit, t, why)
		}
	}
	return nil
}

// checkRestartable refuses a service off the role's list or never
// startable, naming it and the list.
func checkRestartable(role, unit string) error {
	if why := neverRestartable(unit); why != "" {
		return fmt.Errorf("%w: %s may never be restarted through the API: %s", ErrPolicy, unit, why)
	}
	list := roleServices(role)
	if !slices.Contains(list, unit) {
		return fmt.Errorf("%w: %s is not a service of role %s (restartable: %s)", ErrPolicy, unit, role, strings.Join(list, ", "))
	}
	return nil
}
