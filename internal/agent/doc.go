// Package agent is kubedosd, the node daemon, as controllers under one
// supervisor (supervisor.go: restart with backoff, a status per controller
// shown in `node health` and /metrics, clean shutdown). Agent.Run, with a
// Config built in cmd/kubedosd, does all of it:
//
//   - boot status: what the node booted (build-id, slot) and its TPM's PCRs,
//     on the console and in /run/kubedos/status.json (status.go);
//   - identity: enrollment through the hub's attestation gate on first boot
//     (enroll.go, firstboot.go), re-attestation of every later boot and
//     renewal with a fresh quote (renew.go, enrolled.go), writes through
//     internal/durable;
//   - the node API over mTLS with per-call roles and audit (nodeapi*.go):
//     health, services and restarts limited to the role's own
//     (service_policy.go), logs, power, node configuration with an
//     allow-list of kernel parameters (nodeconfig.go, sysctl_policy.go),
//     drift (drift.go, drift_watch.go), upgrades and rollbacks of the A/B
//     slots (slots.go), hand-over of the hub on a master;
//   - the revocation list it checks callers against, failing closed once
//     stale (revocations.go);
//   - the WireGuard planes (planes.go) and the firewall baseline around
//     them (firewall_baseline.go);
//   - /metrics (metrics.go);
//   - the boot check that blesses or rejects a trial boot (bootcheck.go);
//   - on a master, the keeper of the cluster's hub (internal/hubhost);
//   - the node console on tty1 (console.go, internal/nodeconsole): what
//     `node version`, `node health` and `node planes` answer, the
//     enrollment state and the hub's refusal, drawn live; and on a node
//     that names no hub, the Day 0 form, its only write.
//
// Tests drive it with a fake clock, a fake System and the go-tpm-tools
// simulator through Config.OpenProver.
package agent
