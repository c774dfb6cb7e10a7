// Upgrades: the nodes the hub has assigned a build they do not run yet,
// and the upgrades this console started (cluster.UpgradeNode, as
// kubedos node upgrade runs it), kept current on open pages.

package console

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
)

// Bounds of what the console keeps of its upgrades.
const (
	maxJobLines = 40
	maxJobs     = 50
	// DefaultUpgradeWait is how long an upgrade waits for the node to come
	// back on the new build (kubedos node upgrade's --wait).
	DefaultUpgradeWait = 20 * time.Minute
)

// Job is one upgrade the console started.
type Job struct {
	Node, Build, Image, By string
	Started, Ended         time.Time
	// Lines are its progress, oldest first (the last maxJobLines).
	Lines   []string
	Outcome *cluster.Outcome
	Err     string
	// lastTransient: the last line is progress the next one replaces.
	lastTransient bool
}

// Running says the upgrade has not ended.
func (j Job) Running() bool { return j.Ended.IsZero() }

// UpgradesView is the upgrades page's data and its live fragment's.
type UpgradesView struct {
	// Pending are the nodes with an upgrade target they do not run yet,
	// as the hub records them.
	Pending []api.Node
	Jobs    []Job // running first, then newest first
	// Roll is the last roll of the cluster started here (nil: none).
	Roll    *RollJob
	Updated time.Time
}

func (c *Console) upgradesView(nodes []api.Node) UpgradesView {
	v := UpgradesView{Updated: c.cfg.Now()}
	for _, n := range nodes {
		if n.Target != "" && n.Target != n.BuildID {
			v.Pending = append(v.Pending, n)
		}
	}
	sort.Slice(v.Pending, func(i, j int) bool { return v.Pending[i].Name < v.Pending[j].Name })
	c.mu.Lock()
	for _, j := range c.jobs {
		cp := *j
		cp.Lines = append([]string(nil), j.Lines...)
		v.Jobs = append(v.Jobs, cp)
	}
	v.Roll = c.rollView()
	c.mu.Unlock()
	sort.Slice(v.Jobs, func(i, k int) bool {
		a, b := v.Jobs[i], v.Jobs[k]
		if a.Running() != b.Running() {
			return a.Running()
		}
		return a.Started.After(b.Started)
	})
	return v
}

func (c *Console) upgradesPage(w http.ResponseWriter, r *http.Request) {
	res, err := op(r).Hub.ListNodes(r.Context())
	if err != nil {
		c.hubError(w, r, err)
		return
	}
	c.render(w, "upgrades", c.base(r, "Upgrades"), c.upgradesPageOf(op(r), res.Nodes))
}

// startUpgrade runs node name's upgrade to b in the background, as
// kubedos node upgrade runs it. One upgrade per node at a time, and none
// while a roll runs (it would reach the node too).
func (c *Console) startUpgrade(o *Operator, name string, b *Build, img BuildRole) error {
	c.mu.Lock()
	if c.roll != nil && c.roll.Running() {
		c.mu.Unlock()
		return fmt.Errorf("a roll of the cluster to build %s is running: it upgrades the nodes one at a time", c.roll.Build)
	}
	job, ok := c.newJob(o, name, b, img)
	base := c.bg
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("an upgrade of %s is running", name)
	}
	go func() {
		_, _ = c.runJob(base, o, job, b)
		_ = c.live.refresh(base, o.Hub)
	}()
	return nil
}

// newJob records node name's upgrade to b unless one runs; c.mu held.
func (c *Console) newJob(o *Operator, name string, b *Build, img BuildRole) (*Job, bool) {
	if j := c.jobs[name]; j != nil && j.Running() {
		return nil, false
	}
	job := &Job{Node: name, Build: b.BuildID, Image: img.RoleID, By: o.Name, Started: c.cfg.Now()}
	c.jobs[name] = job
	c.pruneJobs()
	return job, true
}

// runJob upgrades job's node as kubedos node upgrade does
// (cluster.UpgradeNode): the hub is asked to accept the build (it checks
// the signature and audits it under the operator), the node's image is
// streamed to its API, and the node is waited for. Its progress goes to
// the job's lines and the live pages.
func (c *Console) runJob(ctx context.Context, o *Operator, job *Job, b *Build) (*cluster.Outcome, error) {
	opt := c.cfg.Upgrade
	opt.Reboot = true
	if opt.Wait == 0 {
		opt.Wait = DefaultUpgradeWait
	}
	opt.Events = cluster.EventFunc(func(e cluster.Event) {
		_, transient := e.(cluster.Transient)
		c.mu.Lock()
		line := clip(e.String(), 500)
		if n := len(job.Lines); transient && n > 0 && job.lastTransient {
			job.Lines[n-1] = line
		} else {
			job.Lines = append(job.Lines, line)
			if over := len(job.Lines) - maxJobLines; over > 0 {
				job.Lines = append([]string(nil), job.Lines[over:]...)
			}
		}
		job.lastTransient = transient
		c.mu.Unlock()
		if !transient {
			c.live.poke(o.Hub)
		}
	})
	ctx, cancel := context.WithTimeout(ctx, opt.Wait+5*time.Minute)
	defer cancel()
	name := job.Node
	out, err := cluster.UpgradeNode(ctx, cluster.UpgradeTarget{Name: name, Hub: o.Hub,
		DialNode: func() (*api.NodeClient, func(), error) { return c.cfg.DialNode(name) }}, b.Dir, opt)
	c.mu.Lock()
	job.Outcome, job.Ended = out, c.cfg.Now()
	if err != nil {
		job.Err = clip(err.Error(), maxAuditField)
	}
	c.mu.Unlock()
	return out, err
}

// pruneJobs forgets the oldest ended upgrades beyond maxJobs; c.mu held.
func (c *Console) pruneJobs() {
	if len(c.jobs) <= maxJobs {
		return
	}
	var ended []*Job
	for _, j := range c.jobs {
		if !j.Running() {
			ended = append(ended, j)
		}
	}
	sort.Slice(ended, func(i, k int) bool { return ended[i].Ended.Before(ended[k].Ended) })
	for _, j := range ended[:max(0, min(len(ended), len(c.jobs)-maxJobs))] {
		delete(c.jobs, j.Node)
	}
}
