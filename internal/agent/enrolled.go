package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/firewall"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
)

// attestation is whether this boot re-attested to the hub.
type attestation struct {
	mu  sync.Mutex
	err error
}

func (a *attestation) set(err error) { a.mu.Lock(); a.err = err; a.mu.Unlock() }
func (a *attestation) get() error    { a.mu.Lock(); defer a.mu.Unlock(); return a.err }

// reattestation is the controller that proves this boot to the hub once: a
// renewal with a fresh quote of this boot's PCRs, against the build the hub
// expects now. An unreachable hub is the supervisor's to retry; a refusal
// ends it (the boot check then fails the trial boot).
type reattestation struct {
	cfg  EnrollConfig
	att  *attestation
	logf func(string, ...any)
}

func (reattestation) Name() string { return "reattestation" }

func (r reattestation) Run(ctx context.Context) error {
	got, err := Renew(ctx, r.cfg)
	switch {
	case err == nil:
		r.logf("re-attested build %s: certificate serial %x until %s", r.cfg.BuildID, got.Certificate.SerialNumber,
			got.Certificate.NotAfter.UTC().Format(time.RFC3339))
		r.att.set(nil)
		return nil
	case final(err):
		r.logf("re-attestation refused: %v", err)
		r.att.set(fmt.Errorf("%w: %v", errAttestRefused, err))
		return nil
	}
	r.att.set(err)
	return err
}

// listening is a server controller: it listens on addr (or takes the
// listener opened before the supervisor started, on its first run) and
// serves until ctx ends.
type listening struct {
	name  string
	addr  string
	lis   net.Listener
	once  sync.Once
	serve func(context.Context, net.Listener) error
	logf  func(string, ...any)
	what  string // for the log: "node API on %s"
}

func (l *listening) Name() string { return l.name }

func (l *listening) Run(ctx context.Context) error {
	var lis net.Listener
	l.once.Do(func() { lis = l.lis })
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", l.addr); err != nil {
			return err
		}
		l.logf(l.what, lis.Addr())
	}
	return l.serve(ctx, lis)
}

// runEnrolled is the enrolled node's life: its controllers under the
// supervisor until ctx ends or the hub refuses a renewal (the node is
// quarantined: every controller stops, and that refusal is the answer).
// The baseline firewall is applied and the servers' sockets opened before
// any controller starts, metrics first: once the node API answers, so do
// they. A node API that cannot start is logged and the node keeps its
// identity.
func (a *Agent) runEnrolled(ctx context.Context, cfg EnrollConfig, st Status, justEnrolled bool) error {
	c, logf := a.cfg, a.cfg.Logf
	var ctrls []Controller
	cfg.link = &hubLink{}
	defer cfg.link.Close()

	// Every boot proves itself to the hub: a node that just enrolled has,
	// one that booted with an identity re-attests.
	att := &attestation{}
	if !justEnrolled {
		att.set(errors.New("not yet re-attested in this boot"))
		ctrls = append(ctrls, reattestation{cfg: cfg, att: att, logf: logf})
	}

	revs, err := LoadRevocationList(filepath.Join(c.StateDir, RevokedFile))
	if err != nil {
		logf("%v; starting from an empty list", err)
	}
	ctrls = append(ctrls, controllerFunc{"revocations", func(ctx context.Context) error {
		RefreshRevocations(ctx, cfg, revs, c.RevocationsEvery, c.Clock, logf)
		return nil
	}})

	slots, serr := HostSlots(st, cfg.Role)
	if serr != nil {
		logf("A/B slots unavailable (no upgrades, no boot check): %v", serr)
		slots = nil
	}
	// The baseline firewall before anything listens, then the WireGuard
	// planes, joined through the hub from the first boot on; each change of
	// the planes updates the firewall.
	sys := NewHostSystem()
	fw := &nodeFirewall{role: cfg.Role, apply: firewall.Apply}
	var kube *kubeRunner
	if runsKubernetes(cfg.Role) {
		kube = newKubeRunner(sys, c.Clock, logf, fw.setOpenings)
		// A node keeps its plan's openings (VRRP and the VIP, etcd's
		// ports) across a restart of kubedosd: keepalived and etcd may
		// well be running.
		if p, err := kube.loadPlan(); err == nil && p != nil {
			fw.open = p.Openings()
		}
	}
	applyFirewall := fw.setPlanes
	if err := applyFirewall(ctx, nil); err != nil {
		logf("%v", err)
	}
	planes := NewPlanes(cfg, filepath.Join(c.StateDir, PlanesDir), wg.Apply, logf)
	planes.AfterApply, planes.Clock = applyFirewall, c.Clock
	ctrls = append(ctrls, controllerFunc{"planes", func(ctx context.Context) error { return planes.Run(ctx, c.PlanesEvery) }})

	srv, err := NewNodeAPI(NodeAPIConfig{Name: cfg.Name, Role: cfg.Role, CA: cfg.CA, IdentityDir: cfg.StateDir,
		StateDir: c.StateDir, Status: st, System: sys, Revocations: revs, Slots: slots, Hub: a.cfg.Keeper, Planes: planes, KubeReady: kubeReady(kube), KubePods: kubePods(kube),
		EtcdHealth: etcdHealth(kube), Etcd: etcdMembership(kube), EtcdRestore: etcdRestorer(kube),
		RevocationMaxAge: c.RevocationMaxAge, Controllers: a.sup, Clock: c.Clock,
		Logf: func(f string, args ...any) { logf("node API: "+f, args...) }})
	if err != nil {
		logf("node API not started: %v", err)
	} else {
		a.view.update(func(v *nodeView) { v.api = srv })
		ctrls = append(ctrls, a.serverControllers(srv)...)
		if r := spec.Role(cfg.Role); r == spec.RolePrometheus || r == spec.RoleGrafana {
			ctrls = append(ctrls, newDashboardsServer(cfg, srv, c.Clock, logf))
		}
		if slots != nil {
			check := BootCheck{Slots: slots, Health: srv.CheckHealth, Attested: att.get, Timeout: c.BootCheckTimeout,
				StateDir: c.StateDir, Logf: logf, Clock: c.Clock, Reboot: func(ctx context.Context) error { return sys.Power(ctx, "reboot") }}
			ctrls = append(ctrls, controllerFunc{"boot-check", func(ctx context.Context) error {
				if err := check.Run(ctx); err != nil && ctx.Err() == nil {
					logf("%v", err)
				}
				return nil
			}})
		}
	}
	ctrls = append(ctrls, renewal{cfg: cfg, clock: c.Clock, logf: logf})
	if cfg.Role == string(spec.RolePrometheus) {
		ctrls = append(ctrls, newPrometheusRunner(cfg, sys, c.Clock, logf))
	}
	if kube != nil {
		ctrls = append(ctrls, newKubePKI(cfg, filepath.Join(c.StateDir, KubePKISubdir), c.Clock, logf), kube)
	}
	return a.sup.Run(ctx, ctrls...)
}

// serverControllers applies the stored configuration and returns the
// metrics server, the drift watch and the node API, their sockets open.
func (a *Agent) serverControllers(srv *NodeAPI) []Controller {
	c, logf := a.cfg, a.cfg.Logf
	if err := srv.ApplyStoredConfig(); err != nil {
		logf("node configuration: %v", err)
	}
	metrics := &listening{name: "metrics", addr: c.MetricsAddr, serve: srv.ServeMetrics, logf: logf, what: "metrics on https://%s/metrics"}
	api := &listening{name: "node-api", addr: c.NodeAPIAddr, serve: srv.Serve, logf: logf, what: "node API on %s"}
	for _, l := range []*listening{metrics, api} {
		lis, err := net.Listen("tcp", l.addr)
		if err != nil {
			logf("%s not served yet: %v", l.name, err)
			continue
		}
		logf(l.what, lis.Addr())
		l.lis = lis
	}
	drift := controllerFunc{"drift", func(ctx context.Context) error { srv.WatchDrift(ctx, c.DriftEvery); return nil }}
	return []Controller{metrics, drift, api}
}
