package console

import (
	"context"
	"net/http"
	"sort"
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
	n, err := c.cfg.Hub.GetNode(r.Context(), r.PathValue("name"))
	if err != nil {
		c.hubError(w, r, err)
		return
	}
	q := r.URL.Query()
	v := c.nodeView(n, q.Get("done"))
	if v.Done == "restart" {
		v.DoneUnit = clip(q.Get("unit"), 256)
	}
	if err := c.readAudit(r.Context()); err != nil {
		v.AuditErr = clip(err.Error(), maxAuditField)
	}
	v.Audit = c.auditOf(n.Name)
	if c.cfg.DialNode != nil && n.State == api.NodeEnrolled {
		ctx, cancel := context.WithTimeout(r.Context(), nodeAPITimeout)
		units, err := c.services(ctx, n.Name)
		cancel()
		if err != nil {
			v.ServicesErr = clip(err.Error(), maxAuditField)
		}
		for _, u := range units {
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
func (c *Console) nodeView(n *api.Node, done string) NodeView {
	acts := c.cfg.Act != nil
	v := NodeView{Node: *n,
		CanRevoke: acts && pki.Allows(c.role, pki.ActionRevoke), CanFence: acts && pki.Allows(c.role, pki.ActionFence),
		CanReplace: acts && pki.Allows(c.role, pki.ActionReplace),
		CanUpgrade: pki.Allows(c.role, pki.ActionUpgrade), CanRestart: pki.Allows(c.role, pki.ActionRestartService)}
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

// services asks the node's API for its services (kubedos node services).
func (c *Console) services(ctx context.Context, name string) ([]api.Unit, error) {
	cl, done, err := c.cfg.DialNode(name)
	if err != nil {
		return nil, err
	}
	defer done()
	s, err := cl.Services(ctx)
	if err != nil {
		return nil, err
	}
	units := s.Units
	sort.SliceStable(units, func(i, j int) bool { return units[i].Restartable && !units[j].Restartable })
	return units, nil
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
