package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// unitControl is what the kubernetes controller needs of systemd
// (HostSystem on a node).
type unitControl interface {
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	// Queue starts a unit without waiting for it to be up: a restored
	// etcd member reports ready only once a quorum of members runs the
	// restored cluster, which the restore of the others brings.
	Queue(ctx context.Context, unit string) error
	// Kill ends a unit's processes at once (SIGKILL): what a stop that
	// waits too long for a graceful end is finished with.
	Kill(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	Reload(ctx context.Context, unit string) error
	// ActiveUnits says which of units are active: one systemctl run for
	// all, every kubeEvery (a tool run per component cost each emulated
	// control plane eight a loop).
	ActiveUnits(ctx context.Context, units []string) (map[string]bool, error)
}

// kubeRunner is the controller that runs the node's Kubernetes components
// (docs/kubernetes.md): from the plan the hub sent with the certificates
// (kubeplan.PlanFile, written by kubernetes-pki) it writes each
// component's flags, kubeconfig and configuration under kubeplan.Dir,
// imports the images baked into the root into containerd, and starts the
// units the image carries — once every certificate a component reads is
// there, and again (a restart) whenever one of its inputs changes. The
// root stays immutable: the image carries binaries and units, the hub's
// plan and certificates the rest.
type kubeRunner struct {
	// root prefixes every kubeplan path: "" on a node, a directory in tests.
	root   string
	units  unitControl
	images func(ctx context.Context, archive string) error
	clock  Clock
	every  time.Duration
	logf   func(string, ...any)
	// lanInterface names the interface holding a LAN address (a load
	// balancer's keepalived holds the VIP there).
	lanInterface func(addr string) (string, error)
	// firewall opens what the plan needs beyond the role's baseline (VRRP
	// from the VIP's other holders and the VIP's port; etcd's ports from
	// its peers and API servers) before the components start; nil leaves
	// the firewall alone.
	firewall func(ctx context.Context, o kubeplan.Openings) error
	// etcdHealth is the local member's /health URL ("": etcdHealthURL).
	etcdHealth string
	// etcdGate is asked before a stacked API server's first start (nil:
	// no wait); kubedosd's is the local member's health.
	etcdGate func(ctx context.Context) error
	// apiGate is asked, after etcdGate, before the first start of a
	// stacked API server on any control plane but the first (nil: no
	// wait); kubedosd's asks the earlier control planes' API servers.
	apiGate func(ctx context.Context, p *kubeplan.Plan) error
	// clusterAPIGate is asked before the controller-manager's and the
	// scheduler's first start (nil: no wait); kubedosd's is the cluster's
	// API address's /readyz.
	clusterAPIGate func(ctx context.Context, p *kubeplan.Plan) error
	// nameHost gives the node its name as hostname before the components
	// start (nil: leaves it); kubedosd's is nodeHostname.
	nameHost func(p *kubeplan.Plan) error
	// apiPort is where the other control planes' API servers listen (0:
	// kubeplan.APIServerPort); tests point it at their servers.
	apiPort int
	// etcdClientURL is another member's client URL (nil: its peer
	// address on the client port); tests point it at their servers.
	etcdClientURL func(kubeplan.EtcdMember) string
	// etcdLocal is the local member's client URL ("": etcdLocalURL).
	etcdLocal string
	// localAPIReady is nil when this node's API server answers /readyz
	// (nil: asked on its LAN address); tests answer it themselves.
	localAPIReady func(ctx context.Context, p *kubeplan.Plan) error

	// etcdutl runs Debian's etcdutl (nil: runEtcdutl); tests fake it.
	etcdutl func(ctx context.Context, args ...string) error
	// apiStopGrace bounds the API server's graceful stop in a restore
	// (0: restoreAPIStopGrace).
	apiStopGrace time.Duration

	// runMu is held by each pass of the loop and by an etcd restore, so
	// the loop never starts what a restore stopped; restoring refuses a
	// second restore while one runs.
	runMu     sync.Mutex
	restoring atomic.Bool

	mu       sync.Mutex
	state    string
	started  map[kubeplan.Component]string // input digest each was started with
	imported bool
	opened   *kubeplan.Openings // what the firewall was last opened for
	// apiWaitSince is when this API server's first start began waiting
	// for another to be ready (zero: not waiting).
	apiWaitSince time.Time
	// apiFails is how many local /readyz checks failed in a row.
	apiFails int
}

// kubeEvery paces the controller: a plan or certificate change is acted on
// within it.
const kubeEvery = 10 * time.Second

func newKubeRunner(sys *HostSystem, clock Clock, logf func(string, ...any), fw func(context.Context, kubeplan.Openings) error) *kubeRunner {
	k := &kubeRunner{units: sys, images: importImage, clock: clock, every: kubeEvery, logf: logf,
		lanInterface: lanInterfaceOf, firewall: fw}
	k.etcdGate = func(ctx context.Context) error { return k.EtcdHealth(ctx).Err }
	k.apiGate = k.EarlierAPIsReady
	k.nameHost = nodeHostname(sys)
	k.clusterAPIGate = func(ctx context.Context, p *kubeplan.Plan) error { return k.APIReady(ctx, p.APIServer, "") }
	return k
}

// hostnamer reads and sets the kernel hostname (HostSystem).
type hostnamer interface {
	Hostname() (string, error)
	SetHostname(name string) error
}

// nodeHostname names the host after the node, as long as it still has its
// image's name (kubedos-<role>; a hostname set by the node's configuration
// is the operator's and stays). The controller-manager and the scheduler
// take their leader-election identity from the hostname: with every control
// plane called kubedos-controlplane, neither operators nor the HA drills
// could tell which one leads (the seventh drill run).
func nodeHostname(h hostnamer) func(p *kubeplan.Plan) error {
	return func(p *kubeplan.Plan) error {
		cur, err := h.Hostname()
		if err != nil || cur != "kubedos-"+p.Role || cur == p.Node {
			return err
		}
		return h.SetHostname(p.Node)
	}
}

// lanInterfaceOf is the interface that holds addr.
func lanInterfaceOf(addr string) (string, error) {
	want, err := netip.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifcs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == want {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface holds the LAN address %s", want)
}

func (*kubeRunner) Name() string { return "kubernetes" }

// State is what the controller last did, for node health.
func (k *kubeRunner) State() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state
}

// Run acts on the plan every k.every until ctx ends. A failure is the
// supervisor's to retry (and shows in node health).
func (k *kubeRunner) Run(ctx context.Context) error {
	for {
		k.runMu.Lock()
		err := k.once(ctx)
		k.runMu.Unlock()
		if err != nil {
			k.setState("failed: " + err.Error())
			return err
		}
		if !sleep(ctx, k.clock, k.every) {
			return nil
		}
	}
}

func (k *kubeRunner) path(p string) string { return filepath.Join(k.root, p) }

func (k *kubeRunner) setState(s string) {
	k.mu.Lock()
	changed := k.state != s
	k.state = s
	k.mu.Unlock()
	if changed {
		k.logf("kubernetes: %s", s)
	}
}

// maxPlanBytes bounds the plan file read back from the state partition.
const maxPlanBytes = 64 << 10

// loadPlan reads the hub's plan for this node; nil when none came yet.
func (k *kubeRunner) loadPlan() (*kubeplan.Plan, error) {
	raw, err := os.ReadFile(k.path(kubeplan.PlanFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(raw) > maxPlanBytes {
		return nil, fmt.Errorf("%s: %d bytes, over %d", kubeplan.PlanFile, len(raw), maxPlanBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var p kubeplan.Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %w", kubeplan.PlanFile, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", kubeplan.PlanFile, err)
	}
	return &p, nil
}

func (k *kubeRunner) once(ctx context.Context) error {
	p, err := k.loadPlan()
	if err != nil {
		return err
	}
	if p == nil {
		k.setState("waiting for the hub's plan (sent with the certificates)")
		return nil
	}
	var host kubeplan.Host
	if p.LB != nil {
		if host.LANInterface, err = k.lanInterface(p.LB.Address); err != nil {
			return fmt.Errorf("load balancer: %w", err)
		}
	}
	// A member starting on an empty data directory learns first whether
	// it joins a running cluster (a replacement): once its certificates
	// are there, before its flags are written.
	if slices.Contains(p.Components, kubeplan.Etcd) && len(k.missing(etcdCerts(p))) == 0 {
		if err := k.etcdPrepare(ctx, p); err != nil {
			return err
		}
	}
	if k.nameHost != nil {
		if err := k.nameHost(p); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
	}
	files, err := kubeplan.Files(p, host)
	if err != nil {
		return err
	}
	if err := k.openFirewall(ctx, p.Openings()); err != nil {
		return err
	}
	for _, f := range files {
		if err := k.writeIfChanged(f); err != nil {
			return err
		}
	}
	if err := k.trackAPIReady(ctx, p); err != nil {
		return fmt.Errorf("keepalived's readiness file: %w", err)
	}
	if slices.Contains(p.Components, kubeplan.Kubelet) && !k.imported {
		if err := k.importImages(ctx); err != nil {
			return err
		}
		k.imported = true
	}
	k.mu.Lock()
	if k.started == nil {
		k.started = map[kubeplan.Component]string{}
	}
	k.mu.Unlock()
	unitNames := make([]string, len(p.Components))
	for i, c := range p.Components {
		unitNames[i] = kubeplan.UnitName(c)
	}
	active, err := k.units.ActiveUnits(ctx, unitNames)
	if err != nil {
		return err
	}
	var waiting, running []string
	for _, c := range p.Components {
		inputs := kubeplan.Inputs(p, c)
		if missing := k.missing(inputs); len(missing) > 0 {
			waiting = append(waiting, fmt.Sprintf("%s (no %s)", c, strings.Join(missing, ", ")))
			continue
		}
		if why := k.startWaits(ctx, p, c); why != "" {
			waiting = append(waiting, fmt.Sprintf("%s (%s)", c, why))
			continue
		}
		sum, err := k.digest(inputs)
		if err != nil {
			return err
		}
		if err := k.converge(ctx, c, sum, active[kubeplan.UnitName(c)]); err != nil {
			return err
		}
		running = append(running, string(c))
	}
	switch {
	case len(waiting) > 0:
		k.setState(fmt.Sprintf("running %s; waiting: %s", orNone(running), strings.Join(waiting, "; ")))
	default:
		k.setState("running " + strings.Join(running, ", "))
	}
	return nil
}

// etcdCerts are the certificates and keys etcd reads (its inputs under
// the PKI directory).
func etcdCerts(p *kubeplan.Plan) []string {
	var out []string
	for _, f := range kubeplan.Inputs(p, kubeplan.Etcd) {
		if strings.HasPrefix(f, kubeplan.PKIDir+"/") {
			out = append(out, f)
		}
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// converge starts c, or restarts it when its inputs changed since it was
// started. A unit already active when kubedosd (re)starts is adopted, not
// restarted: kubedosd restarting must not bounce the control plane.
// active is whether its unit was active at the start of this loop.
func (k *kubeRunner) converge(ctx context.Context, c kubeplan.Component, sum string, active bool) error {
	unit := kubeplan.UnitName(c)
	k.mu.Lock()
	was := k.started[c]
	k.mu.Unlock()
	switch {
	case was == sum:
		if active {
			return nil
		}
		// Stopped by hand or by failure: systemd restarts it (Restart=always)
		// unless someone stopped it; start it again.
		if err := k.units.Start(ctx, unit); err != nil {
			return fmt.Errorf("start %s: %w", unit, err)
		}
	case was == "":
		if !active {
			if err := k.units.Start(ctx, unit); err != nil {
				return fmt.Errorf("start %s: %w", unit, err)
			}
			k.logf("kubernetes: started %s", unit)
		}
	case kubeplan.Reloads(c):
		if !active {
			if err := k.units.Start(ctx, unit); err != nil {
				return fmt.Errorf("start %s: %w", unit, err)
			}
			break
		}
		if err := k.units.Reload(ctx, unit); err != nil {
			return fmt.Errorf("reload %s: %w", unit, err)
		}
		k.logf("kubernetes: reloaded %s: its configuration changed", unit)
	default:
		if err := k.units.Restart(ctx, unit); err != nil {
			return fmt.Errorf("restart %s: %w", unit, err)
		}
		k.logf("kubernetes: restarted %s: its configuration or certificates changed", unit)
	}
	k.mu.Lock()
	k.started[c] = sum
	k.mu.Unlock()
	return nil
}

// openFirewall hands the plan's openings to the firewall when they
// changed (or were never handed), before the components start.
func (k *kubeRunner) openFirewall(ctx context.Context, o kubeplan.Openings) error {
	k.mu.Lock()
	same := k.opened != nil && reflect.DeepEqual(o, *k.opened)
	k.mu.Unlock()
	if same || k.firewall == nil {
		return nil
	}
	if err := k.firewall(ctx, o); err != nil {
		return fmt.Errorf("kubernetes firewall: %w", err)
	}
	k.mu.Lock()
	k.opened = &o
	k.mu.Unlock()
	return nil
}

func (k *kubeRunner) writeIfChanged(f kubeplan.File) error {
	p := k.path(f.Path)
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.Data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(p, f.Data, os.FileMode(f.Mode))
}

// missing are the certificates and keys among inputs not there yet.
func (k *kubeRunner) missing(inputs []string) []string {
	var out []string
	for _, f := range inputs {
		if !strings.HasPrefix(f, kubeplan.PKIDir+"/") {
			continue
		}
		if _, err := os.Stat(k.path(f)); err != nil {
			out = append(out, filepath.Base(f))
		}
	}
	return out
}

func (k *kubeRunner) digest(inputs []string) (string, error) {
	h := sha256.New()
	for _, f := range inputs {
		raw, err := os.ReadFile(k.path(f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(raw))
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// importImages puts every archive baked into the root into containerd's
// Kubernetes namespace; containerd is started first.
func (k *kubeRunner) importImages(ctx context.Context) error {
	if err := k.units.Start(ctx, "containerd.service"); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	archives, err := filepath.Glob(filepath.Join(k.path(kubeplan.ImageDir), "*.tar"))
	if err != nil {
		return err
	}
	if len(archives) == 0 {
		return fmt.Errorf("no image archives in %s: the image was built without Kubernetes", kubeplan.ImageDir)
	}
	slices.Sort(archives)
	for _, a := range archives {
		if err := k.images(ctx, a); err != nil {
			return fmt.Errorf("import %s: %w", filepath.Base(a), err)
		}
	}
	k.logf("kubernetes: imported %d images into containerd", len(archives))
	return nil
}

// importImage imports one OCI archive with containerd's ctr, into the
// namespace the CRI plugin serves the kubelet from.
func importImage(ctx context.Context, archive string) error {
	_, err := run(ctx, "ctr", "--namespace", "k8s.io", "images", "import", "--", archive)
	return err
}
