package agent

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/buildinfo"
	"github.com/kubedos/kubedos/internal/wg"
)

// nodeService implements api.NodeServer; authentication, authorization,
// audit and error codes are the interceptors' (nodeapi.go).
type nodeService struct{ n *NodeAPI }

var _ api.NodeServer = nodeService{}

func (s nodeService) Version(context.Context, *api.NodeVersionRequest) (*api.NodeVersion, error) {
	return s.n.Version(), nil
}

// Version is what `node version` answers (and the node console shows).
func (n *NodeAPI) Version() *api.NodeVersion {
	bi := buildinfo.Get()
	st := n.cfg.Status
	v := &api.NodeVersion{Node: n.cfg.Name, Role: n.cfg.Role, BuildID: st.Build, Slot: st.Slot, RootHash: st.RootHash,
		Kubedosd: bi.Version, Revision: bi.Revision, GoVersion: bi.GoVersion}
	if n.cfg.Slots != nil {
		v.Boot = n.cfg.Slots.State()
	}
	if b, err := os.ReadFile(DataIDFile); err == nil {
		v.DataID = strings.TrimSpace(string(b))
	}
	return v
}

func (s nodeService) Planes(ctx context.Context, _ *api.PlanesRequest) (*api.Planes, error) {
	out := s.n.Planes()
	if out == nil {
		return nil, fmt.Errorf("%w: this node is on no plane", ErrNotFound)
	}
	return out, nil
}

// Planes is what `node planes` answers (and the node console shows): each
// plane as the kernel reports it; nil when the node is on none.
func (n *NodeAPI) Planes() *api.Planes {
	if n.cfg.Planes == nil {
		return nil
	}
	out := &api.Planes{Interfaces: []wg.Status{}}
	ifcs, joined, err := n.cfg.Planes.Report()
	out.Joined = joined
	if err != nil {
		out.Error = err.Error()
	}
	for _, ifc := range ifcs {
		out.Interfaces = append(out.Interfaces, n.cfg.ReadPlane(ifc))
	}
	return out
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

// TakeOverHub hands the cluster's hub to this node, if it is a master.
func (s nodeService) TakeOverHub(ctx context.Context, req *api.HubHandoff) (*api.HubHandoffResult, error) {
	if s.n.cfg.Hub == nil {
		return nil, fmt.Errorf("%w: node %s (role %s) does not keep a hub", ErrRefused, s.n.cfg.Name, s.n.cfg.Role)
	}
	return s.n.cfg.Hub.TakeOver(ctx, s.n.cfg.Name, s.n.cfg.Role, actorOf(ctx), req)
}

func (s nodeService) EtcdMembers(ctx context.Context, _ *api.EtcdMembersRequest) (*api.EtcdMembers, error) {
	if s.n.cfg.Etcd == nil {
		return nil, fmt.Errorf("%w: node %s runs no etcd member", ErrNotFound, s.n.cfg.Name)
	}
	return s.n.cfg.Etcd.EtcdMembers(ctx)
}

func (s nodeService) EtcdRemoveMember(ctx context.Context, r *api.EtcdRemoveMemberRequest) (*api.EtcdMembers, error) {
	if s.n.cfg.Etcd == nil {
		return nil, fmt.Errorf("%w: node %s runs no etcd member", ErrNotFound, s.n.cfg.Name)
	}
	return s.n.cfg.Etcd.EtcdRemoveMember(ctx, r.ID, r.Name)
}

func (s nodeService) EtcdRestore(stream api.EtcdRestoreStream) (*api.EtcdRestoreResult, error) {
	if s.n.cfg.EtcdRestore == nil {
		return nil, fmt.Errorf("%w: node %s runs no etcd member", ErrNotFound, s.n.cfg.Name)
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("%w: etcd restore stream: %v", ErrInvalid, err)
	}
	if first.Begin == nil || len(first.Data) > 0 {
		return nil, fmt.Errorf("%w: the first message must describe the snapshot, and only that", ErrInvalid)
	}
	return s.n.cfg.EtcdRestore.EtcdRestore(stream.Context(), *first.Begin, &restoreReader{stream: stream})
}

// restoreReader reads the snapshot's bytes from the messages after the
// first; another description among them is refused.
type restoreReader struct {
	stream api.EtcdRestoreStream
	buf    []byte
}

func (r *restoreReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		c, err := r.stream.Recv()
		if err != nil {
			return 0, err // io.EOF once the caller closed its side
		}
		if c.Begin != nil {
			return 0, fmt.Errorf("%w: a second description in the etcd restore stream", ErrInvalid)
		}
		r.buf = c.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
