package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/buildinfo"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/wg"
)

// nodeService implements api.NodeServer; authentication, authorization,
// audit and error codes are the interceptors' (nodeapi.go).
type nodeService struct{ n *NodeAPI }

var _ api.NodeServer = nodeService{}

func (s nodeService) Version(context.Context, *api.NodeVersionRequest) (*api.NodeVersion, error) {
	bi := buildinfo.Get()
	st := s.n.cfg.Status
	v := &api.NodeVersion{Node: s.n.cfg.Name, Role: s.n.cfg.Role, BuildID: st.Build, Slot: st.Slot, RootHash: st.RootHash,
		Kubedosd: bi.Version, Revision: bi.Revision, GoVersion: bi.GoVersion}
	if s.n.cfg.Slots != nil {
		v.Boot = s.n.cfg.Slots.State()
	}
	if b, err := os.ReadFile(DataIDFile); err == nil {
		v.DataID = strings.TrimSpace(string(b))
	}
	return v, nil
}

func (s nodeService) Health(ctx context.Context, _ *api.HealthRequest) (*api.Health, error) {
	h := s.n.CheckHealth(ctx)
	return &h, nil
}

// CheckHealth runs every health check: enrolled, certificate valid, TPM
// readable, systemd running with no failed unit (critical), and a fresh
// revocation list (critical once older than RevocationMaxAge: revocation
// fails closed).
func (n *NodeAPI) CheckHealth(ctx context.Context) api.Health {
	now := n.cfg.Now()
	h := api.Health{FailedUnits: []string{}}
	add := func(name string, critical bool, err error, detail string) {
		c := api.HealthCheck{Name: name, OK: err == nil, Critical: critical, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		h.Checks = append(h.Checks, c)
	}
	cert, err := n.nodeCertificate()
	add("enrolled", true, err, fmt.Sprintf("identity in %s chains to the cluster CA", n.cfg.IdentityDir))
	if cert != nil {
		var verr error
		switch {
		case now.Before(cert.NotBefore):
			verr = fmt.Errorf("certificate serial %x not valid before %s", cert.SerialNumber, cert.NotBefore.UTC().Format(time.RFC3339))
		case now.After(cert.NotAfter):
			verr = fmt.Errorf("certificate serial %x expired at %s", cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339))
		}
		add("certificate", true, verr, fmt.Sprintf("serial %x valid until %s, renewal at %s", cert.SerialNumber,
			cert.NotAfter.UTC().Format(time.RFC3339), RenewAt(cert).UTC().Format(time.RFC3339)))
	} else {
		add("certificate", true, errors.New("no node certificate"), "")
	}
	add("tpm", true, n.tpmReadable(), "PCR 7 readable in "+n.cfg.PCRDir)

	state, err := n.cfg.System.SystemState(ctx)
	h.SystemState = state
	if err == nil && state != "running" {
		err = fmt.Errorf("systemd is %s", state)
	}
	add("systemd", true, err, "systemd is running")
	failed, err := n.cfg.System.FailedUnits(ctx)
	if failed != nil {
		h.FailedUnits = failed
	}
	if err == nil && len(failed) > 0 {
		err = fmt.Errorf("%d failed unit(s): %s", len(failed), strings.Join(failed, ", "))
	}
	add("failed-units", true, err, "no failed unit")

	add("revocations", true, n.revocationsFresh(now), fmt.Sprintf("%d revoked serial(s), fetched %s ago (at most %s)",
		n.cfg.Revocations.Set().Len(), now.Sub(n.fetchedAt()).Round(time.Second), n.cfg.RevocationMaxAge))
	// Each controller, reported only: a failing one is restarted, and the
	// checks above say whether the node works.
	if n.cfg.Controllers != nil {
		for _, c := range n.cfg.Controllers.Statuses() {
			h.Checks = append(h.Checks, controllerCheck(c, now))
		}
	}
	if n.cfg.Planes != nil {
		detail, perr := n.planesHealth(now)
		// Reported only, like the revocation list: the planes stay as
		// they were while the hub is away.
		add("planes", false, perr, detail)
	}

	h.Healthy = true
	for _, c := range h.Checks {
		if c.Critical && !c.OK {
			h.Healthy = false
		}
	}
	return h
}

// revocationsFresh is nil while the revocation list is younger than
// RevocationMaxAge; a list never fetched is stale.
func (n *NodeAPI) revocationsFresh(now time.Time) error {
	fetched, ferr := n.cfg.Revocations.Fetched()
	last := ""
	if ferr != nil {
		last = "; last attempt: " + ferr.Error()
	}
	switch {
	case fetched.IsZero():
		return fmt.Errorf("revocation list never fetched from the hub%s", last)
	case now.Sub(fetched) > n.cfg.RevocationMaxAge:
		return fmt.Errorf("revocation list stale: last fetched %s ago, at most %s allowed%s",
			now.Sub(fetched).Round(time.Second), n.cfg.RevocationMaxAge, last)
	}
	return nil
}

func (n *NodeAPI) fetchedAt() time.Time { t, _ := n.cfg.Revocations.Fetched(); return t }

// controllerCheck is a controller's line in `node health`: passing while
// it runs or has finished its work.
func controllerCheck(c ControllerStatus, now time.Time) api.HealthCheck {
	detail := fmt.Sprintf("%s for %s, %d restart(s)", c.State, now.Sub(c.Since).Round(time.Second), c.Restarts)
	if c.LastError != "" {
		detail += "; last error: " + c.LastError
	}
	return api.HealthCheck{Name: "controller " + c.Name, OK: c.State == StateRunning || c.State == StateDone, Detail: detail}
}

// planesHealth: the node has joined and applied every plane, and each
// interface the kernel reports is up.
func (n *NodeAPI) planesHealth(now time.Time) (string, error) {
	ifcs, joined, err := n.cfg.Planes.Report()
	switch {
	case err != nil:
		return "", err
	case joined.IsZero() || len(ifcs) == 0:
		return "", errors.New("not joined yet")
	}
	peers := 0
	for _, ifc := range ifcs {
		st := n.cfg.ReadPlane(ifc)
		if st.Error != "" {
			return "", fmt.Errorf("%s: %s", ifc.Name, st.Error)
		}
		if !st.Up {
			return "", fmt.Errorf("%s is down", ifc.Name)
		}
		peers += len(ifc.Peers)
	}
	return fmt.Sprintf("%d plane(s) up with %d peer(s) in all; the hub answered %s ago", len(ifcs), peers, now.Sub(joined).Round(time.Second)), nil
}

func (s nodeService) Planes(ctx context.Context, _ *api.PlanesRequest) (*api.Planes, error) {
	out := &api.Planes{Interfaces: []wg.Status{}}
	if s.n.cfg.Planes == nil {
		return nil, fmt.Errorf("%w: this node is on no plane", ErrNotFound)
	}
	ifcs, joined, err := s.n.cfg.Planes.Report()
	out.Joined = joined
	if err != nil {
		out.Error = err.Error()
	}
	for _, ifc := range ifcs {
		out.Interfaces = append(out.Interfaces, s.n.cfg.ReadPlane(ifc))
	}
	return out, nil
}

// nodeCertificate reads the node's certificate and checks it chains to the
// cluster CA.
func (n *NodeAPI) nodeCertificate() (*x509.Certificate, error) {
	pair, err := n.certs.get(nil)
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if err := leaf.CheckSignatureFrom(n.cfg.CA); err != nil {
		return leaf, fmt.Errorf("node certificate does not chain to the cluster CA: %w", err)
	}
	return leaf, nil
}

func (n *NodeAPI) tpmReadable() error {
	p := filepath.Join(n.cfg.PCRDir, "7")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("TPM: %w", err)
	}
	if v := strings.TrimSpace(string(b)); len(v) != 64 {
		return fmt.Errorf("TPM: %s holds %q, not a sha256 value", p, v)
	} else if _, err := hex.DecodeString(v); err != nil {
		return fmt.Errorf("TPM: %s holds %q, not a sha256 value", p, v)
	}
	return nil
}

func (s nodeService) Services(ctx context.Context, _ *api.ServicesRequest) (*api.Services, error) {
	units, err := s.n.cfg.System.Services(ctx)
	if err != nil {
		return nil, err
	}
	if units == nil {
		units = []api.Unit{}
	}
	for i := range units {
		units[i].Restartable = checkRestartable(s.n.cfg.Role, units[i].Name) == nil
	}
	slices.SortFunc(units, func(a, b api.Unit) int { return strings.Compare(a.Name, b.Name) })
	return &api.Services{Units: units}, nil
}

var (
	// unitName is what a unit name may hold here: systemd's characters
	// (with \x escapes), never '/', never a leading '-' or '.'.
	unitName = regexp.MustCompile(`^[A-Za-z0-9:_@\\][A-Za-z0-9:_.@\\-]*$`)
	// otherUnitTypes are the suffixes of units that are not services.
	otherUnitTypes = []string{".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer", ".path", ".slice", ".scope"}
)

// checkUnitName accepts a unit name safe to hand to systemctl and journalctl.
func checkUnitName(name string) error {
	if name == "" || len(name) > 256 || !unitName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%w: unit name %q: want letters, digits and :_.@-\\ (no '/', no '..', at most 256)", ErrInvalid, name)
	}
	return nil
}

// serviceName normalises a service name ("chrony" → "chrony.service") and
// refuses other unit types and templates.
func serviceName(name string) (string, error) {
	if err := checkUnitName(name); err != nil {
		return "", err
	}
	if !strings.HasSuffix(name, ".service") {
		for _, t := range otherUnitTypes {
			if strings.HasSuffix(name, t) {
				return "", fmt.Errorf("%w: %s is a %s unit: only services are restarted", ErrInvalid, name, strings.TrimPrefix(t, "."))
			}
		}
		name += ".service"
	}
	if strings.HasSuffix(name, "@.service") {
		return "", fmt.Errorf("%w: %s is a template: name an instance (name@instance.service)", ErrInvalid, name)
	}
	return name, nil
}

// restartTimeout bounds one restart.
const restartTimeout = 2 * time.Minute

func (s nodeService) RestartService(ctx context.Context, r *api.RestartServiceRequest) (*api.Unit, error) {
	name, err := serviceName(r.Name)
	if err != nil {
		return nil, err
	}
	if name == "kubedosd.service" {
		return nil, fmt.Errorf("%w: restarting kubedosd would cut this call; reboot the node instead", ErrRefused)
	}
	if err := checkRestartable(s.n.cfg.Role, name); err != nil {
		return nil, err
	}
	sys := s.n.cfg.System
	u, err := sys.Unit(ctx, name)
	if err != nil {
		return nil, err
	}
	if u.Load != "loaded" {
		return nil, fmt.Errorf("%w: service %s (load state %q)", ErrNotFound, name, u.Load)
	}
	// An alias resolves to its unit: the unit systemd would start is the
	// one checked, and its file's actions too.
	if u.Name != name {
		if err := checkRestartable(s.n.cfg.Role, u.Name); err != nil {
			return nil, err
		}
	}
	acts, err := sys.UnitActions(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	if err := acts.check(u.Name); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	if err := sys.Restart(rctx, name); err != nil {
		return nil, fmt.Errorf("restart %s: %w", name, err)
	}
	u, err = sys.Unit(ctx, name)
	if err != nil {
		return nil, err
	}
	u.Restartable = true
	return &u, nil
}

// boundLines applies the default and the maximum to a requested count.
func boundLines(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: lines %d must not be negative", ErrInvalid, n)
	case n == 0:
		return api.DefaultLogLines, nil
	}
	return min(n, api.MaxLogLines), nil
}

func (s nodeService) journalQuery(r *api.LogsRequest) (JournalQuery, error) {
	lines, err := boundLines(r.Lines)
	if err != nil {
		return JournalQuery{}, err
	}
	if r.Unit != "" {
		if err := checkUnitName(r.Unit); err != nil {
			return JournalQuery{}, err
		}
	}
	return JournalQuery{Unit: r.Unit, Lines: lines, Since: r.Since}, nil
}

func (s nodeService) Logs(ctx context.Context, r *api.LogsRequest) (*api.Logs, error) {
	q, err := s.journalQuery(r)
	if err != nil {
		return nil, err
	}
	entries, err := s.n.cfg.System.Journal(ctx, q)
	if err != nil {
		return nil, err
	}
	// The tool was asked for q.Lines; never trust it to have listened.
	if len(entries) > q.Lines {
		entries = entries[len(entries)-q.Lines:]
	}
	// Keep the newest entries that fit in MaxLogsBytes.
	keep, size := 0, 0
	for i := len(entries) - 1; i >= 0; i-- {
		size += len(entries[i].Message) + 128
		if size > api.MaxLogsBytes {
			keep = i + 1
			break
		}
	}
	out := &api.Logs{Entries: append([]api.LogEntry{}, entries[keep:]...), Lines: q.Lines, Omitted: keep}
	return out, nil
}

func (s nodeService) Follow(r *api.LogsRequest, stream api.LogStream) error {
	q, err := s.journalQuery(r)
	if err != nil {
		return err
	}
	return s.n.cfg.System.FollowJournal(stream.Context(), q, func(e api.LogEntry) error { return stream.Send(&e) })
}

func (s nodeService) Dmesg(ctx context.Context, r *api.DmesgRequest) (*api.Dmesg, error) {
	lines, err := boundLines(r.Lines)
	if err != nil {
		return nil, err
	}
	msgs, err := s.n.cfg.System.Kernel(ctx)
	if err != nil {
		return nil, err
	}
	if len(msgs) > lines {
		msgs = msgs[len(msgs)-lines:]
	}
	return &api.Dmesg{Messages: append([]api.KernelMessage{}, msgs...), Lines: lines}, nil
}

func (s nodeService) Reboot(context.Context, *api.PowerRequest) (*api.Power, error) {
	return s.n.power.schedule("reboot", s.n.cfg.PowerDelay, s.n.cfg.Now(), s.n.cfg.System.Power, s.n.cfg.Logf)
}

func (s nodeService) Shutdown(context.Context, *api.PowerRequest) (*api.Power, error) {
	return s.n.power.schedule("poweroff", s.n.cfg.PowerDelay, s.n.cfg.Now(), s.n.cfg.System.Power, s.n.cfg.Logf)
}

func (n *NodeAPI) configPath() string { return filepath.Join(n.cfg.StateDir, ConfigFile) }

// storedConfig reads the applied configuration: its bytes (nil when none
// was ever applied) and the decoded document (nil if it does not decode).
func (n *NodeAPI) storedConfig() ([]byte, *NodeConfig, error) {
	raw, err := os.ReadFile(n.configPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, EmptyNodeConfig(), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", n.configPath(), err)
	}
	cfg, err := DecodeNodeConfig(n.configPath(), raw)
	return raw, cfg, err
}

func (s nodeService) ConfigGet(context.Context, *api.ConfigGetRequest) (*api.NodeConfigDoc, error) {
	s.n.configMu.Lock()
	defer s.n.configMu.Unlock()
	raw, cfg, err := s.n.storedConfig()
	if err != nil {
		if raw == nil {
			return nil, err
		}
		// A stored document that no longer decodes is shown as it is; drift
		// reports it.
		return &api.NodeConfigDoc{Present: true, Document: string(raw), SHA256: sha256Hex(raw)}, nil
	}
	doc := cfg.Canonical()
	return &api.NodeConfigDoc{Present: raw != nil, Document: string(doc), SHA256: sha256Hex(doc)}, nil
}

func (s nodeService) ConfigApply(ctx context.Context, r *api.ConfigApplyRequest) (*api.ConfigApplied, error) {
	n := s.n
	cfg, err := DecodeNodeConfig("config", []byte(r.Document))
	if err != nil {
		return nil, err
	}
	if err := n.checkOnNode(cfg); err != nil {
		return nil, err
	}
	n.configMu.Lock()
	defer n.configMu.Unlock()
	raw, _, err := n.storedConfig()
	if raw == nil && err != nil {
		return nil, err
	}
	if raw == nil {
		raw = []byte{}
	}
	doc := cfg.Canonical()
	out := &api.ConfigApplied{DryRun: r.DryRun, Changed: !bytes.Equal(raw, doc), SHA256: sha256Hex(doc),
		Diff: unifiedDiff(ConfigFile+" (applied)", ConfigFile+" (requested)", raw, doc)}
	if r.DryRun {
		return out, nil
	}
	if out.Changed {
		if err := durable.WriteFile(n.configPath(), doc, 0o644); err != nil {
			return nil, fmt.Errorf("store %s: %w", n.configPath(), err)
		}
	}
	if err := n.applyConfig(cfg); err != nil {
		return nil, fmt.Errorf("configuration stored in %s, but applying it failed (kubedos node drift shows what differs): %w", n.configPath(), err)
	}
	return out, nil
}

// checkOnNode checks what only the node can: every kernel parameter
// exists here. It reads, never writes.
func (n *NodeAPI) checkOnNode(cfg *NodeConfig) error {
	cerr := &ConfigError{Source: "config"}
	for _, k := range slices.Sorted(maps.Keys(cfg.Sysctls)) {
		if _, err := n.cfg.System.Sysctl(k); errors.Is(err, ErrNotFound) {
			cerr.Problems = append(cerr.Problems, ConfigProblem{Field: "sysctls." + k, Message: "no such kernel parameter on this node"})
		} else if err != nil {
			return err
		}
	}
	if len(cerr.Problems) > 0 {
		return cerr
	}
	return nil
}

// applyConfig makes the running system match cfg: hostname, then kernel
// parameters in name order; every failure is reported.
func (n *NodeAPI) applyConfig(cfg *NodeConfig) error {
	var errs []error
	sys := n.cfg.System
	if cfg.Hostname != "" {
		if cur, err := sys.Hostname(); err != nil || cur != cfg.Hostname {
			if err := sys.SetHostname(cfg.Hostname); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Sysctls)) {
		if err := sys.SetSysctl(k, cfg.Sysctls[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ApplyStoredConfig applies the configuration on the state partition, as
// kubedosd does at start (the root and /etc are read-only: the stored
// document is the node's configuration).
func (n *NodeAPI) ApplyStoredConfig() error {
	n.configMu.Lock()
	defer n.configMu.Unlock()
	raw, cfg, err := n.storedConfig()
	if err != nil {
		return err
	}
	if raw == nil {
		return nil
	}
	return n.applyConfig(cfg)
}

// TakeOverHub hands the cluster's hub to this node, if it is a master.
func (s nodeService) TakeOverHub(ctx context.Context, req *api.HubHandoff) (*api.HubHandoffResult, error) {
	if s.n.cfg.Hub == nil {
		return nil, fmt.Errorf("%w: node %s (role %s) does not keep a hub", ErrRefused, s.n.cfg.Name, s.n.cfg.Role)
	}
	return s.n.cfg.Hub.TakeOver(ctx, s.n.cfg.Name, s.n.cfg.Role, actorOf(ctx), req)
}
