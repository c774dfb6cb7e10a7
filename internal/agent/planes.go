package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// PlanesDir holds the node's WireGuard plane keys on the state partition
// (one <plane>.key per plane, mode 0600).
const PlanesDir = "wg"

// PlaneApplier puts a plane on the node (wg.Apply on a real node).
type PlaneApplier func(ctx context.Context, ifc wg.Interface, priv wgtypes.Key) error

// Planes keeps the node on the cluster's WireGuard planes: it registers the
// node's plane keys with the hub, applies the interfaces the hub answers
// with when they change, and remembers what it applied for the node API.
// It is safe for concurrent use.
type Planes struct {
	cfg   EnrollConfig
	dir   string
	apply PlaneApplier
	logf  func(string, ...any)

	// AfterApply runs once interfaces changed were applied (the agent
	// opens their ports in the firewall); its error fails the join.
	AfterApply func(context.Context, []wg.Interface) error
	// Clock paces Run (SystemClock when nil).
	Clock Clock

	mu      sync.Mutex
	applied []wg.Interface
	joined  time.Time
	lastErr error
}

// NewPlanes keeps its keys in dir and applies with apply.
func NewPlanes(cfg EnrollConfig, dir string, apply PlaneApplier, logf func(string, ...any)) *Planes {
	return &Planes{cfg: cfg, dir: dir, apply: apply, logf: logf}
}

// Report is what the node is on: the interfaces last applied, when the hub
// last answered, and the error of the last attempt (nil when it worked).
func (p *Planes) Report() ([]wg.Interface, time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied, p.joined, p.lastErr
}

// Run joins now and every `every` until ctx ends (nil). Each join tells
// the node who is on its planes now, so a node that enrolls reaches the
// master within `every`, and a revoked one loses it within that. A failed
// join keeps the interfaces as they are (a hub outage must not take the
// planes down) and is logged once until the next success; keys that cannot
// be loaded are Run's error.
func (p *Planes) Run(ctx context.Context, every time.Duration) error {
	clock := p.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	keys, err := wg.LoadOrCreateKeys(p.dir)
	if err != nil {
		p.set(nil, false, err)
		return fmt.Errorf("planes: %w", err)
	}
	lastLogged := ""
	for {
		err := p.Once(ctx, keys)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && err.Error() != lastLogged:
			p.logf("planes: %v (retrying every %s)", err, every)
			lastLogged = err.Error()
		case err == nil && lastLogged != "":
			p.logf("planes: joined again")
			lastLogged = ""
		}
		if !sleep(ctx, clock, every) {
			return nil
		}
	}
}

// Once joins the planes one time and applies what changed.
func (p *Planes) Once(ctx context.Context, keys map[spec.Plane]wgtypes.Key) error {
	ifcs, err := p.join(ctx, wg.PublicKeys(keys))
	if err != nil {
		p.set(nil, false, err)
		return err
	}
	p.mu.Lock()
	same := reflect.DeepEqual(ifcs, p.applied)
	p.mu.Unlock()
	if same {
		p.set(ifcs, true, nil)
		return nil
	}
	for _, ifc := range ifcs {
		priv, ok := keys[ifc.Plane]
		if !ok {
			err := fmt.Errorf("the hub sent plane %s, which this node has no key for", ifc.Plane)
			p.set(nil, true, err)
			return err
		}
		if err := p.apply(ctx, ifc, priv); err != nil {
			p.set(nil, true, err)
			return err
		}
	}
	if p.AfterApply != nil {
		if err := p.AfterApply(ctx, ifcs); err != nil {
			p.set(nil, true, err)
			return err
		}
	}
	p.set(ifcs, true, nil)
	p.logf("planes: %s", describePlanes(ifcs))
	return nil
}

func (p *Planes) set(applied []wg.Interface, answered bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if applied != nil {
		p.applied = applied
	}
	if answered {
		p.joined = time.Now()
	}
	p.lastErr = err
}

// join registers the public keys with the hub, authenticated by the node's
// certificate, and returns the interfaces the hub says the node should have.
func (p *Planes) join(ctx context.Context, pub map[spec.Plane]string) ([]wg.Interface, error) {
	cc, done, err := hubConn(p.cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := api.NewPlanesClient(cc).Join(ctx, &api.JoinPlanesRequest{Keys: pub})
	done(err)
	if err != nil {
		return nil, fmt.Errorf("join the planes at hub %s: %w", p.cfg.HubAddr(), err)
	}
	return res.Interfaces, nil
}

// describePlanes is one log line: each interface, its address and peers.
func describePlanes(ifcs []wg.Interface) string {
	var parts []string
	for _, ifc := range ifcs {
		var peers []string
		for _, p := range ifc.Peers {
			peers = append(peers, p.Name)
		}
		who := "no peers yet"
		if len(peers) > 0 {
			who = "peers " + strings.Join(peers, ",")
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", ifc.Name, ifc.Address, who))
	}
	return strings.Join(parts, "; ")
}

// planeKeyDrift checks the plane keys a node has made: each must parse and
// be readable by root alone. Keys not made yet are not drift.
func planeKeyDrift(dir string) []api.DriftItem {
	var items []api.DriftItem
	for _, p := range spec.Planes {
		f := filepath.Join(dir, string(p)+".key")
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		if st.Mode().Perm() != 0o600 {
			items = append(items, api.DriftItem{Path: f, Kind: DriftModified, Expected: "mode 0600", Actual: fmt.Sprintf("mode %04o", st.Mode().Perm())})
		}
		raw, err := os.ReadFile(f)
		if err == nil {
			_, err = wgtypes.ParseKey(strings.TrimSpace(string(raw)))
		}
		if err != nil {
			items = append(items, api.DriftItem{Path: f, Kind: DriftInvalid, Detail: err.Error()})
		}
	}
	return items
}
