package agent

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRestartServiceRefusesPowerAndShells performs the attack of issue 14,
// hole 2: an operator "restarts" the units that reboot, power off, kexec
// or open a root shell. Every one is refused with PermissionDenied and
// systemd is never asked.
func TestRestartServiceRefusesPowerAndShells(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	op := e.as("olga", pki.RoleOperator)
	attacks := []string{"systemd-reboot", "systemd-poweroff.service", "systemd-halt", "systemd-kexec", "debug-shell",
		"rescue", "emergency.service", "systemd-soft-reboot", "kubedos-boot-deadline", "getty@tty9", "serial-getty@ttyS0"}
	e.sys.with(func() {
		for _, a := range attacks {
			name, _ := serviceName(a)
			e.sys.units[name] = api.Unit{Name: name, Load: "loaded", Active: "inactive", Sub: "dead"}
		}
	})
	for _, a := range attacks {
		_, err := op.RestartService(ctx, a)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), strings.TrimSuffix(a, ".service")) {
			t.Errorf("restart %s: %v, want PermissionDenied naming it", a, err)
		}
	}
	if got := e.sys.restarts(); len(got) != 0 {
		t.Errorf("systemd was asked to restart %v", got)
	}
}

// TestRestartServiceRefusesUnitsThatAct: a unit of the role's list whose
// unit file reboots or powers off on success or failure, or refuses a
// manual start, is refused too (the list can be wrong; the unit file is
// what systemd obeys).
func TestRestartServiceRefusesUnitsThatAct(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	op := e.as("olga", pki.RoleOperator)
	for _, tt := range []struct {
		name    string
		actions UnitActions
		want    string
	}{
		{"success-action", UnitActions{SuccessAction: "reboot"}, "SuccessAction=reboot"},
		{"failure-action", UnitActions{FailureAction: "poweroff-force"}, "FailureAction=poweroff-force"},
		{"start-limit", UnitActions{StartLimitAction: "reboot-immediate"}, "StartLimitAction=reboot-immediate"},
		{"refuse", UnitActions{RefuseManualStart: true}, "RefuseManualStart"},
		{"on-failure", UnitActions{Triggers: []string{"reboot.target"}}, "reboot.target"},
		{"on-success-shell", UnitActions{Triggers: []string{"debug-shell.service"}}, "debug-shell.service"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.sys.with(func() { e.sys.actions = map[string]UnitActions{"chrony.service": tt.actions} })
			_, err := op.RestartService(ctx, "chrony")
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("restart chrony with %+v: %v, want PermissionDenied naming %s", tt.actions, err, tt.want)
			}
		})
	}
	if got := e.sys.restarts(); len(got) != 0 {
		t.Errorf("systemd was asked to restart %v", got)
	}
}

// TestServicesShowsRestartable: `node services` marks what an operator may
// restart: the role's own services, never kubedosd.
func TestServicesShowsRestartable(t *testing.T) {
	e := newNodeEnv(t)
	e.sys.with(func() {
		e.sys.units["systemd-reboot.service"] = api.Unit{Name: "systemd-reboot.service", Load: "loaded", Active: "inactive"}
		e.sys.units["kubelet.service"] = api.Unit{Name: "kubelet.service", Load: "loaded", Active: "active"}
	})
	s, err := e.as("rita", pki.RoleReader).Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range s.Units {
		if u.Restartable {
			got = append(got, u.Name)
		}
	}
	if want := []string{"chrony.service", "kubelet.service"}; !slices.Equal(got, want) {
		t.Errorf("restartable %v, want %v", got, want)
	}
}

func TestRoleServices(t *testing.T) {
	for _, role := range []string{"master", "prometheus", "grafana", "storage", "etcd", "controlplane", "worker", "loadbalancer"} {
		list := roleServices(role)
		if !slices.Contains(list, "chrony.service") {
			t.Errorf("role %s: %v lacks the common services", role, list)
		}
		for _, s := range list {
			if neverRestartable(s) != "" || s == "kubedosd.service" {
				t.Errorf("role %s lists %s", role, s)
			}
		}
	}
	if got := roleServices("worker"); !slices.Contains(got, "kubelet.service") || !slices.Contains(got, "containerd.service") {
		t.Errorf("worker services %v", got)
	}
}
