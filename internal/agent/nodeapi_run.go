package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/firewall"
	"github.com/kubedos/kubedos/internal/wg"
)

// NodeAPIAddr is where kubedosd serves the node API once enrolled.
var NodeAPIAddr = fmt.Sprintf(":%d", api.NodeAPIPort)

// BootCheckTimeout bounds how long a trial boot may take to become healthy
// before kubedosd gives up on it (the boot-deadline unit's 6 minutes are
// the backstop when kubedosd itself does not run).
var BootCheckTimeout = 3 * time.Minute

// attestation is whether this boot re-attested to the hub.
type attestation struct {
	mu  sync.Mutex
	err error
}

func (a *attestation) set(err error) { a.mu.Lock(); a.err = err; a.mu.Unlock() }
func (a *attestation) get() error    { a.mu.Lock(); defer a.mu.Unlock(); return a.err }

// reattest renews the certificate with a fresh quote until the hub answers.
func reattest(ctx context.Context, cfg EnrollConfig, att *attestation, logf func(string, ...any)) {
	for delay := 2 * time.Second; ; {
		got, err := Renew(ctx, cfg)
		if err == nil {
			logf("re-attested build %s: certificate serial %x until %s", cfg.BuildID, got.Certificate.SerialNumber,
				got.Certificate.NotAfter.UTC().Format(time.RFC3339))
			att.set(nil)
			return
		}
		if final(err) {
			logf("re-attestation refused: %v", err)
			att.set(fmt.Errorf("%w: %v", errAttestRefused, err))
			return
		}
		att.set(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Second)
	}
}

// runEnrolled is the enrolled node's life: the node API (with the stored
// configuration applied first) and the revocation list it checks callers
// against, beside the certificate renewal loop. All three are owned by ctx;
// when renewal ends (a refusal: the node is quarantined) the API stops too.
// A node API that cannot start is logged and the node keeps its identity.
func runEnrolled(ctx context.Context, cfg EnrollConfig, st Status, justEnrolled bool, keeper HubKeeper, logf func(string, ...any)) error {
	ctx, cancel := context.WithCancel(ctx)
	var tasks sync.WaitGroup
	defer func() { cancel(); tasks.Wait() }()

	// Every boot proves itself to the hub: a node that just enrolled has,
	// one that booted with an identity re-attests (a renewal with a fresh
	// quote of this boot's PCRs, against the build the hub expects now).
	att := &attestation{}
	if justEnrolled {
		att.set(nil)
	} else {
		att.set(errors.New("not yet re-attested in this boot"))
		tasks.Add(1)
		go func() {
			defer tasks.Done()
			reattest(ctx, cfg, att, logf)
		}()
	}

	revFile := filepath.Join(NodeStateDir, RevokedFile)
	revs, err := LoadRevocationList(revFile)
	if err != nil {
		logf("%v; starting from an empty list", err)
	}
	tasks.Add(1)
	go func() {
		defer tasks.Done()
		RefreshRevocations(ctx, cfg, revs, revocationsEvery, logf)
	}()

	slots, serr := HostSlots(st, cfg.Role)
	if serr != nil {
		logf("A/B slots unavailable (no upgrades, no boot check): %v", serr)
		slots = nil
	}
	// The baseline firewall before anything listens, then the WireGuard
	// planes, joined through the hub from the first boot on; each change of
	// the planes updates the firewall.
	applyFirewall := func(ctx context.Context, ifcs []wg.Interface) error {
		return firewall.Apply(ctx, Baseline(cfg.Role, ifcs))
	}
	if err := applyFirewall(ctx, nil); err != nil {
		logf("%v", err)
	}
	planes := NewPlanes(cfg, filepath.Join(NodeStateDir, PlanesDir), wg.Apply, logf)
	planes.AfterApply = applyFirewall
	tasks.Add(1)
	go func() {
		defer tasks.Done()
		planes.Run(ctx, PlanesEvery)
	}()

	sys := NewHostSystem()
	srv, err := NewNodeAPI(NodeAPIConfig{Name: cfg.Name, Role: cfg.Role, CA: cfg.CA, IdentityDir: cfg.StateDir,
		StateDir: NodeStateDir, Status: st, System: sys, Revocations: revs, Slots: slots, Hub: keeper, Planes: planes,
		Logf: func(f string, a ...any) { logf("node API: "+f, a...) }})
	if err == nil && slots != nil {
		check := BootCheck{Slots: slots, Health: srv.CheckHealth, Attested: att.get, Timeout: BootCheckTimeout,
			StateDir: NodeStateDir, Logf: logf, Reboot: func(ctx context.Context) error { return sys.Power(ctx, "reboot") }}
		tasks.Add(1)
		go func() {
			defer tasks.Done()
			if err := check.Run(ctx); err != nil && ctx.Err() == nil {
				logf("%v", err)
			}
		}()
	}
	if err == nil {
		if aerr := srv.ApplyStoredConfig(); aerr != nil {
			logf("node configuration: %v", aerr)
		}
		// Metrics listen first: once the node API answers, so do they.
		if mlis, merr := net.Listen("tcp", MetricsAddr); merr == nil {
			logf("metrics on https://%s/metrics", mlis.Addr())
			tasks.Add(2)
			go func() {
				defer tasks.Done()
				if err := srv.ServeMetrics(ctx, mlis); err != nil {
					logf("metrics: %v", err)
				}
			}()
			go func() {
				defer tasks.Done()
				srv.WatchDrift(ctx, DriftEvery)
			}()
		} else {
			logf("metrics not served: %v", merr)
		}
		var lis net.Listener
		if lis, err = net.Listen("tcp", NodeAPIAddr); err == nil {
			logf("node API on %s", lis.Addr())
			tasks.Add(1)
			go func() {
				defer tasks.Done()
				if err := srv.Serve(ctx, lis); err != nil {
					logf("node API: %v", err)
				}
			}()
		}
	}
	if err != nil {
		logf("node API not started: %v", err)
	}
	return RenewLoop(ctx, cfg, logf)
}
