package console

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

// Bounds of the node page's extra reads.
const (
	nodeAudit      = 20              // audit entries naming the node
	nodeAPITimeout = 4 * time.Second // the node's own API, which may be down
	maxUnits       = 500
	// restartTimeout bounds a service restart (kubedos node
	// restart-service's --timeout).
	restartTimeout = 3 * time.Minute
)

// NodeView is the node page's data.
type NodeView struct {
	Node   api.Node
	Reason string // the full reason, bounded
	Done   string
	// DoneUnit is the service a restart just restarted.
	DoneUnit string

	// Build is the build the console was given whose role image the node
	// reports (nil: none of them); Image is that image, with the PCR
	// prediction the hub checks the node's quote against.
	Build *Build
	Image BuildRole
	// Target is likewise the build the node is to be upgraded to.
	TargetBuild *Build

	Audit    []api.AuditEntry // the newest entries naming the node, newest first
	AuditErr string

	// Services are the node's systemd services as its API reports them;
	// Restartable those it lets an operator restart.
	Services    []api.Unit
	Restartable []string
	ServicesErr string

	// Health, Planes and Drift are what the node's API reports (kubedos
	// node health, planes, drift), bounded.
	Health                         *api.Health
	Planes                         *api.Planes
	Drift                          *api.Drift
	HealthErr, PlanesErr, DriftErr string
	// NodeAPINote says why the node's own API is not read (Config).
	NodeAPINote string

	// Upgrades are the builds with an image for the node's role.
	Upgrades []UpgradeChoice
	Job      *Job

	CanRevoke, CanFence, CanReplace, CanUpgrade, CanRestart bool
}

// UpgradeChoice is a build a node may be upgraded to.
type UpgradeChoice struct {
	BuildID, Image string
	Current        bool // the node runs it already
}

func (c *Console) node(w http.ResponseWriter, r *http.Request) {
	o := op(r)
	n, err := o.Hub.GetNode(r.Context(), r.PathValue("name"))
	if err != nil {
		c.hubError(w, r, err)
		return
	}
	q := r.URL.Query()
	v := c.nodeView(o, n, q.Get("done"))
	if v.Done == "restart" {
		v.DoneUnit = clip(q.Get("unit"), 256)
	}
	if err := c.readAudit(r.Context(), o.Hub); err != nil {
		v.AuditErr = clip(err.Error(), maxAuditField)
	}
	v.Audit = c.auditOf(n.Name)
	if c.cfg.DialNode != nil && n.State == api.NodeEnrolled {
		ctx, cancel := context.WithTimeout(r.Context(), nodeAPITimeout)
		reads := c.readNode(ctx, n.Name)
		cancel()
		v.Health, v.Planes, v.Drift = reads.health, reads.planes, reads.drift
		v.HealthErr, v.PlanesErr, v.DriftErr, v.ServicesErr = errText(reads.healthErr), errText(reads.planesErr), errText(reads.driftErr), errText(reads.servicesErr)
		for _, u := range reads.units {
			if len(v.Services) == maxUnits {
				break
			}
			// A node's answer is bounded like anything else it sends.
			u.Name, u.Description = clip(u.Name, 256), clip(u.Description, 256)
			u.Load, u.Active, u.Sub = clip(u.Load, 64), clip(u.Active, 64), clip(u.Sub, 64)
			v.Services = append(v.Services, u)
			if u.Restartable {
				v.Restartable = append(v.Restartable, u.Name)
			}
		}
	}
	if !v.CanUpgrade || c.cfg.DialNode == nil || n.State != api.NodeEnrolled {
		v.CanUpgrade, v.Upgrades = false, nil
	}
	if len(v.Restartable) == 0 {
		v.CanRestart = false
	}
	c.render(w, "node", c.base(r, "Node "+n.Name), v)
}

// nodeView is what the node page shows of the hub's record and the
// console's builds; the reads of the node and the audit log come after.
func (c *Console) nodeView(o *Operator, n *api.Node, done string) NodeView {
	acts := o.Act != nil
	v := NodeView{Node: *n, NodeAPINote: c.cfg.NodeAPINote,
		CanRevoke: acts && pki.Allows(o.Role, pki.ActionRevoke), CanFence: acts && pki.Allows(o.Role, pki.ActionFence),
		CanReplace: acts && pki.Allows(o.Role, pki.ActionReplace),
		CanUpgrade: pki.Allows(o.Role, pki.ActionUpgrade), CanRestart: pki.Allows(o.Role, pki.ActionRestartService)}
	if n.Reason != nil {
		v.Reason = clip(n.Reason.Check+": "+n.Reason.Detail, maxReason)
	}
	switch done {
	case "revoke", "fence", "replace", "restart":
		v.Done = done
	}
	if b, img, ok := c.imageOf(n.BuildID); ok {
		v.Build, v.Image = b, img
	}
	if n.Target != "" {
		v.TargetBuild, _, _ = c.imageOf(n.Target)
	}
	for i := range c.builds {
		b := &c.builds[i]
		if b.Err != "" {
			continue
		}
		if img, ok := b.Role(n.Role); ok {
			v.Upgrades = append(v.Upgrades, UpgradeChoice{BuildID: b.BuildID, Image: img.RoleID, Current: img.RoleID == n.BuildID})
		}
	}
	c.mu.Lock()
	if j := c.jobs[n.Name]; j != nil {
		cp := *j
		cp.Lines = append([]string(nil), j.Lines...)
		v.Job = &cp
	}
	c.mu.Unlock()
	return v
}

// nodeReads is what the node page reads from the node's own API.
type nodeReads struct {
	units                                       []api.Unit
	health                                      *api.Health
	planes                                      *api.Planes
	drift                                       *api.Drift
	servicesErr, healthErr, planesErr, driftErr error
}

// readNode asks the node's API, over one connection and at once, what
// kubedos node services, health, planes and drift show.
func (c *Console) readNode(ctx context.Context, name string) nodeReads {
	var out nodeReads
	cl, done, err := c.cfg.DialNode(name)
	if err != nil {
		out.servicesErr, out.healthErr, out.planesErr, out.driftErr = err, err, err, err
		return out
	}
	defer done()
	var wg sync.WaitGroup
	wg.Go(func() { out.units, out.servicesErr = unitsOf(ctx, cl) })
	wg.Go(func() {
		out.health, out.healthErr = cl.Health(ctx)
		boundHealth(out.health)
	})
	wg.Go(func() {
		out.planes, out.planesErr = cl.Planes(ctx)
		boundPlanes(out.planes)
	})
	wg.Go(func() {
		out.drift, out.driftErr = cl.Drift(ctx)
		boundDrift(out.drift)
	})
	wg.Wait()
	return out
}

// services asks the node's API for its services (kubedos node services).
func (c *Console) services(ctx context.Context, name string) ([]api.Unit, error) {
	cl, done, err := c.cfg.DialNode(name)
	if err != nil {
		return nil, err
	}
	defer done()
	return unitsOf(ctx, cl)
}

func unitsOf(ctx context.Context, cl *api.NodeClient) ([]api.Unit, error) {
	s, err := cl.Services(ctx)
	if err != nil {
		return nil, err
	}
	units := s.Units
	sort.SliceStable(units, func(i, j int) bool { return units[i].Restartable && !units[j].Restartable })
	return units, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return clip(err.Error(), maxAuditField)
}

// Bounds of what the node page shows of a node's answers.
const (
	maxNodeList = 200 // checks, failed units, drift items, peers
	maxNodeText = 512
)

func boundHealth(h *api.Health) {
	if h == nil {
		return
	}
	h.SystemState = clip(h.SystemState, 64)
	h.FailedUnits = h.FailedUnits[:min(len(h.FailedUnits), maxNodeList)]
	for i := range h.FailedUnits {
		h.FailedUnits[i] = clip(h.FailedUnits[i], 256)
	}
	h.Checks = h.Checks[:min(len(h.Checks), maxNodeList)]
	for i := range h.Checks {
		h.Checks[i].Name, h.Checks[i].Detail = clip(h.Checks[i].Name, 128), clip(h.Checks[i].Detail, maxNodeText)
	}
}

func boundPlanes(p *api.Planes) {
	if p == nil {
		return
	}
	p.Error = clip(p.Error, maxNodeText)
	p.Interfaces = p.Interfaces[:min(len(p.Interfaces), 16)]
	for i := range p.Interfaces {
		ifc := &p.Interfaces[i]
		ifc.Plane, ifc.Interface, ifc.Error = clip(ifc.Plane, 64), clip(ifc.Interface, 64), clip(ifc.Error, maxNodeText)
		ifc.Addresses = ifc.Addresses[:min(len(ifc.Addresses), 16)]
		for j := range ifc.Addresses {
			ifc.Addresses[j] = clip(ifc.Addresses[j], 64)
		}
		ifc.Peers = ifc.Peers[:min(len(ifc.Peers), maxNodeList)]
		for j := range ifc.Peers {
			pe := &ifc.Peers[j]
			pe.Name, pe.Endpoint, pe.PublicKey = clip(pe.Name, 128), clip(pe.Endpoint, 128), clip(pe.PublicKey, 64)
			pe.AllowedIPs = nil // not shown
		}
	}
}

func boundDrift(d *api.Drift) {
	if d == nil {
		return
	}
	d.Items = d.Items[:min(len(d.Items), maxNodeList)]
	for i := range d.Items {
		it := &d.Items[i]
		it.Path, it.Kind = clip(it.Path, 256), clip(it.Kind, 32)
		it.Expected, it.Actual, it.Detail = clip(it.Expected, maxNodeText), clip(it.Actual, maxNodeText), clip(it.Detail, maxNodeText)
	}
}

// auditOf is the newest entries of the audit tail that name node name.
func (c *Console) auditOf(name string) []api.AuditEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []api.AuditEntry
	for i := len(c.audit) - 1; i >= 0 && len(out) < nodeAudit; i-- {
		if c.audit[i].Target == name {
			out = append(out, c.audit[i])
		}
	}
	return out
}
