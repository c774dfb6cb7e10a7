package agent

import (
	"context"
	"slices"
	"time"

	"github.com/kubedos/kubedos/internal/kubeplan"
)

// everStarted is whether this kubedosd started (or adopted) c: a wait
// before a component's first start never holds it back after.
func (k *kubeRunner) everStarted(c kubeplan.Component) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.started[c] != ""
}

// startWaits says why c is not started yet ("" when it may start).
func (k *kubeRunner) startWaits(ctx context.Context, p *kubeplan.Plan, c kubeplan.Component) string {
	if c == kubeplan.ControllerManager || c == kubeplan.Scheduler {
		return k.controllersWait(ctx, p, c)
	}
	return k.apiServerWaits(ctx, p, c)
}

// controllersWait holds the controller-manager's and the scheduler's
// first start until the cluster's API answers /readyz: without it the
// controller-manager exits at once and systemd starts it again every few
// seconds — 22 times, 5.6 CPU-seconds each, on a waiting control plane in
// the sixth HA drill run, CPU its starved neighbours needed to bring the
// first API server up. Once started they are not held back (they ride
// out an API outage themselves). "" when it may start.
func (k *kubeRunner) controllersWait(ctx context.Context, p *kubeplan.Plan, c kubeplan.Component) string {
	if k.clusterAPIGate == nil {
		return ""
	}
	if k.everStarted(c) {
		return ""
	}
	if err := k.clusterAPIGate(ctx, p); err != nil {
		return "waiting for the cluster's API: " + clipString(err.Error())
	}
	return ""
}

// apiServerWaits says why a stacked API server is not started yet. Its
// first start waits for the local etcd member to be healthy, so the
// members form their quorum before the API servers' start competes with
// them for the CPU (three stacked members under emulation never did
// otherwise). Then, on every control plane but the first (the first etcd
// member), it waits for the earlier control planes' API servers to be
// ready, so they join one at a time in the spec's order as kubeadm's do: three API servers running their
// bootstrap hooks at once on a starved host failed those hooks and
// restarted without end (the fourth HA drill run). That wait is bounded
// by apiJoinWait, so a control plane that never comes up delays the later
// ones' start, not forever. A replacement joins a running cluster: the
// earlier ones are ready and it starts at once. Once started an API server is never held
// back: a member losing its quorum later is the API server's to ride out.
// "" when it may start.
func (k *kubeRunner) apiServerWaits(ctx context.Context, p *kubeplan.Plan, c kubeplan.Component) string {
	if c != kubeplan.APIServer || k.everStarted(c) {
		return ""
	}
	stacked := slices.Contains(p.Components, kubeplan.Etcd)
	if stacked {
		if k.etcdGate == nil {
			return ""
		}
		if err := k.etcdGate(ctx); err != nil {
			return "its etcd member is not healthy yet: " + err.Error()
		}
	}
	// Stacked, the first member's API server starts at once; with etcd
	// nodes of their own, the first control plane's (it has no earlier
	// ones): three API servers running their bootstrap hooks at once
	// against the etcd nodes of the 16-node reference under emulation
	// failed them ("start-service-ip-repair-controllers") and restarted
	// without end, as the stacked ones had in the fourth HA drill run.
	if k.apiGate == nil || stacked && (len(p.EtcdMembers) < 2 || p.EtcdMembers[0].Name == p.Node) ||
		!stacked && len(p.ControlPlanes) == 0 {
		return ""
	}
	now := k.clock.Now()
	if k.apiWaitSince.IsZero() {
		k.apiWaitSince = now
	}
	err := k.apiGate(ctx, p)
	if err == nil {
		return ""
	}
	if waited := now.Sub(k.apiWaitSince); waited >= apiJoinWait {
		k.logf("kubernetes: starting the API server without another one ready after %s: %s", waited.Round(time.Second), clipString(err.Error()))
		return ""
	}
	return "waiting for the earlier API servers: " + clipString(err.Error())
}

// apiJoinWait bounds how long a joining control plane's first API server
// start waits for the earlier ones to be ready: on real hardware they are
// ready in seconds; under emulation the first took over 15 minutes (the
// sixth HA drill run, where 15 let the others start beside it).
const apiJoinWait = 30 * time.Minute
