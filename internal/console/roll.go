// Rolling the cluster: a build through the spec's nodes one at a time, as
// kubedos cluster upgrade does (cluster.Roll over cluster.UpgradeNode,
// in cluster.RollOrder), each node's upgrade an upgrade job of its own.

package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/pki"
)

// RollAtHub is why the console the hub serves on the master does not roll
// the cluster, and where to.
const RollAtHub = "Rolling the cluster is not offered here: this console runs at the hub, which holds the manifests of the builds " +
	"it accepted but not their images (root, verity tree and UKI) to stream to the nodes, and a node's own API takes an " +
	"upgrade only from an admin's certificate, which the hub does not hold for you. On the machine with the build and your " +
	"admin key, run kubedos console SPEC --build DIR and roll from its Upgrades page, or kubedos cluster upgrade SPEC --build DIR."

// States of a roll's step besides an outcome's result (upgraded, current,
// rolled-back, written).
const (
	stepWaiting    = "waiting"
	stepRunning    = "running"
	stepFailed     = "failed"
	stepNotReached = "not-reached"
)

// RollJob is a roll of the cluster this console started.
type RollJob struct {
	Build, By      string
	Started, Ended time.Time
	// Steps are the nodes in the order the roll takes them.
	Steps []RollStep
	Err   string
}

// RollStep is one node of a roll and how far it got.
type RollStep struct {
	Node, State string
}

// Running says the roll has not ended.
func (r RollJob) Running() bool { return r.Ended.IsZero() }

// rollUnavailable says why this console cannot roll the cluster ("": it
// can).
func (c *Console) rollUnavailable() string {
	switch {
	case c.cfg.DialNode == nil && c.cfg.Operators != nil:
		return RollAtHub
	case c.cfg.DialNode == nil:
		return "Rolling the cluster is not offered: this console reaches no node API to stream a build to."
	case c.cfg.Spec == nil:
		return "Rolling the cluster is not offered: this console was started without the cluster's spec, whose order a roll " +
			"takes the nodes in (as kubedos cluster upgrade does). Run kubedos console SPEC --build DIR."
	}
	for i := range c.builds {
		if c.builds[i].Err == "" {
			return ""
		}
	}
	return "Rolling the cluster is not offered: this console was given no build it could read. Run kubedos console SPEC --build DIR " +
		"(a build's directory, or its build-id under --out)."
}

// rollBuilds are the builds a roll may take.
func (c *Console) rollBuilds() []string {
	var ids []string
	for i := range c.builds {
		if c.builds[i].Err == "" {
			ids = append(ids, c.builds[i].BuildID)
		}
	}
	return ids
}

// rollAction checks a roll request, then starts it: admin only (the
// upgrade's own role), with the session's CSRF token, a build this
// console was given and that build's id typed as confirmation.
func (c *Console) rollAction(w http.ResponseWriter, r *http.Request) {
	o := op(r)
	if !pki.Allows(o.Role, pki.ActionUpgrade) {
		http.Error(w, fmt.Sprintf("forbidden: role %s may not roll the cluster (the console acts as %s)", o.Role, o.Name), http.StatusForbidden)
		return
	}
	if !c.readForm(w, r) {
		return
	}
	if why := c.rollUnavailable(); why != "" {
		http.Error(w, "not done: "+why, http.StatusNotImplemented)
		return
	}
	id := r.PostForm.Get("build")
	b, ok := c.buildByID(id)
	if !ok {
		http.Error(w, fmt.Sprintf("not done: %q is not a build this console was given", clip(id, 200)), http.StatusBadRequest)
		return
	}
	if r.PostForm.Get("confirm") != b.BuildID {
		http.Error(w, fmt.Sprintf("not done: type the build's id %q to confirm", b.BuildID), http.StatusBadRequest)
		return
	}
	if err := c.startRoll(o, b); err != nil {
		http.Error(w, "not done: "+err.Error(), http.StatusConflict)
		return
	}
	http.Redirect(w, r, "/upgrades", http.StatusSeeOther)
}

// startRoll rolls b through the spec's nodes in the background, as
// kubedos cluster upgrade does: one at a time, each settled on the new
// build before the next, stopping at the first failure. One roll at a
// time, and none while a node's own upgrade runs.
func (c *Console) startRoll(o *Operator, b *Build) error {
	names := cluster.RollOrder(c.cfg.Spec)
	c.mu.Lock()
	if c.roll != nil && c.roll.Running() {
		c.mu.Unlock()
		return fmt.Errorf("a roll of the cluster to build %s is running", c.roll.Build)
	}
	for _, j := range c.jobs {
		if j.Running() {
			c.mu.Unlock()
			return fmt.Errorf("an upgrade of %s is running: roll when it has ended", j.Node)
		}
	}
	roll := &RollJob{Build: b.BuildID, By: o.Name, Started: c.cfg.Now()}
	for _, n := range names {
		roll.Steps = append(roll.Steps, RollStep{Node: clip(n, 256), State: stepWaiting})
	}
	c.roll = roll
	base := c.bg
	c.mu.Unlock()
	c.live.poke(o.Hub)
	go func() {
		step := -1
		one := func(ctx context.Context, name string) (*cluster.Outcome, error) {
			return c.rollOne(ctx, o, b, name)
		}
		// Quorum-aware as kubedos cluster upgrade is: an etcd member's turn
		// waits for the others to be healthy, the roll for it to be again.
		wait := c.cfg.Upgrade.Wait
		if wait == 0 {
			wait = DefaultUpgradeWait
		}
		if g := cluster.EtcdQuorum(c.cfg.Spec, c.cfg.DialNode, wait, c.cfg.Upgrade.SettleEvery, nil); g != nil && c.cfg.DialNode != nil {
			one = g.Wrap(one)
		}
		_, err := cluster.Roll(base, names, func(ctx context.Context, name string) (*cluster.Outcome, error) {
			step++
			c.setStep(roll, step, stepRunning)
			c.live.poke(o.Hub)
			return one(ctx, name)
		}, func(out *cluster.Outcome) { c.setStep(roll, step, out.Result) })
		c.mu.Lock()
		for i := range roll.Steps {
			switch {
			case i == step && err != nil && roll.Steps[i].State == stepRunning:
				roll.Steps[i].State = stepFailed
			case roll.Steps[i].State == stepWaiting:
				roll.Steps[i].State = stepNotReached
			}
		}
		if err != nil {
			roll.Err = clip(err.Error(), maxAuditField)
		}
		roll.Ended = c.cfg.Now()
		c.mu.Unlock()
		_ = c.live.refresh(base, o.Hub)
	}()
	return nil
}

// rollOne upgrades one node of a roll as a job of its own, so its
// progress shows as a node's upgrade does.
func (c *Console) rollOne(ctx context.Context, o *Operator, b *Build, name string) (*cluster.Outcome, error) {
	n, err := o.Hub.GetNode(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("hub: node %s: %w", name, err)
	}
	img, ok := b.Role(n.Role)
	if !ok {
		return nil, fmt.Errorf("build %s has no image for role %q of node %s", b.BuildID, n.Role, name)
	}
	c.mu.Lock()
	job, ok := c.newJob(o, name, b, img)
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("an upgrade of %s is running", name)
	}
	return c.runJob(ctx, o, job, b)
}

// setStep sets the state of a roll's i-th step.
func (c *Console) setStep(roll *RollJob, i int, state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= 0 && i < len(roll.Steps) {
		roll.Steps[i].State = strings.ReplaceAll(clip(state, 64), " ", "-")
	}
}

// rollView is a copy of the last roll (nil: none); c.mu held.
func (c *Console) rollView() *RollJob {
	if c.roll == nil {
		return nil
	}
	cp := *c.roll
	cp.Steps = append([]RollStep(nil), c.roll.Steps...)
	return &cp
}

// UpgradesPage is the upgrades page's data: the live part, and the roll
// form (or why there is none) for an admin.
type UpgradesPage struct {
	UpgradesView
	CanRoll    bool
	RollNote   string
	RollBuilds []string
	RollOrder  []string
}

func (c *Console) upgradesPageOf(o *Operator, nodes []api.Node) UpgradesPage {
	p := UpgradesPage{UpgradesView: c.upgradesView(nodes)}
	if !pki.Allows(o.Role, pki.ActionUpgrade) {
		return p
	}
	if p.RollNote = c.rollUnavailable(); p.RollNote == "" {
		p.CanRoll, p.RollBuilds, p.RollOrder = true, c.rollBuilds(), cluster.RollOrder(c.cfg.Spec)
	}
	return p
}
