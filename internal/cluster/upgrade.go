package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/upgrade"
)

// Outcome is what one node's upgrade came to.
type Outcome struct {
	Node    string             `json:"node"`
	From    string             `json:"fromBuild"`
	To      string             `json:"toBuild"`
	Result  string             `json:"result"` // upgraded, rolled-back, written (no reboot), current (nothing to do)
	Running string             `json:"runningBuild,omitempty"`
	Written *api.UpgradeResult `json:"written,omitempty"`
	Seconds float64            `json:"seconds"`
	// WriteSeconds is the image's upload, check and write on the node
	// (the node's own steps, timed, are in Written.Steps); SettleSeconds
	// the reboot until it runs the build with its boot marked good.
	WriteSeconds  float64 `json:"writeSeconds,omitempty"`
	SettleSeconds float64 `json:"settleSeconds,omitempty"`
	// ReadySeconds is the wait, once settled, for a kubelet node's
	// Kubernetes Node to be Ready again and its pods with it.
	ReadySeconds float64 `json:"readySeconds,omitempty"`
	Detail       string  `json:"detail,omitempty"`
}

// ErrRolledBack: the node came back on its old build by itself.
var ErrRolledBack = errors.New("the new build did not pass its boot check; the node rolled back")

// UpgradeTarget is how to reach one node and its hub.
type UpgradeTarget struct {
	Name     string
	Hub      BuildAssigner
	DialNode func() (*api.NodeClient, func(), error)
}

// BuildAssigner is the hub call an upgrade starts with: *api.AdminClient
// (the web console passes its own hub client through it).
type BuildAssigner interface {
	AssignBuild(ctx context.Context, name string, manifest, signature []byte) (*api.Node, error)
}

// UpgradeOptions: Reboot into the build (else only write it); Wait bounds
// the wait for the node to settle; SettleEvery is the poll interval
// (default 3 s).
type UpgradeOptions struct {
	Reboot      bool
	Wait        time.Duration
	SettleEvery time.Duration
	Events      Events
}

// UpgradeNode assigns the build to the node at the hub, streams the node's
// role image to it, and (with Reboot) waits until it runs the new build
// with its boot marked good — or came back on the old one.
func UpgradeNode(ctx context.Context, t UpgradeTarget, buildDir string, o UpgradeOptions) (*Outcome, error) {
	ev := events{o.Events}
	start := time.Now()
	raw, err := os.ReadFile(filepath.Join(buildDir, manifest.ManifestFile))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(buildDir, manifest.SignatureFile))
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", buildDir, err)
	}
	n, err := t.Hub.AssignBuild(ctx, t.Name, raw, sig)
	if err != nil {
		return nil, fmt.Errorf("hub: assign build %s to %s: %w", m.BuildID, t.Name, err)
	}
	img, ok := m.Roles[n.Role]
	if !ok {
		return nil, fmt.Errorf("build %s has no image for role %s", m.BuildID, n.Role)
	}
	out := &Outcome{Node: t.Name, From: n.BuildID, To: img.RoleID}
	ev.emit(StepDone{Node: t.Name, Text: fmt.Sprintf("the hub accepts build %s (role %s image %s) from it", m.BuildID, n.Role, img.RoleID)})
	cl, done, err := t.DialNode()
	if err != nil {
		return nil, err
	}
	// A node already settled on the build is left alone, so a roll that
	// stopped half-way can be run again without rebooting the nodes it did.
	if v, err := cl.Version(ctx); err != nil {
		done()
		return nil, fmt.Errorf("node %s: %w", t.Name, err)
	} else if RunsSettled(v, img.RoleID) {
		done()
		out.From, out.Running, out.Result = v.BuildID, v.BuildID, "current"
		out.Seconds = time.Since(start).Seconds()
		ev.emit(StepDone{Node: t.Name, Text: fmt.Sprintf("already runs build %s, its boot marked good; nothing to write", img.RoleID)})
		return out, nil
	}
	// A kubelet node's pods before: after the reboot the roll waits for
	// them Ready again (not for those already failing now). A node whose
	// kubedosd cannot list them (an older build, the API away) is only
	// waited for until its Node is Ready.
	var before []api.PodReadiness
	if o.Reboot {
		if h, err := cl.HealthWithPods(ctx); err == nil {
			before = h.Pods
		} else {
			ev.emit(StepDone{Node: t.Name, Text: "its pods could not be listed before the upgrade (" + err.Error() + "): only its Node's readiness is waited for after"})
		}
	}
	var total int64
	for _, p := range upgrade.Parts {
		if fe, ok := m.File(manifest.RoleFile(n.Role, p)); ok {
			total += fe.Size
		}
	}
	writing := time.Now()
	res, err := cl.Upgrade(ctx, raw, sig, o.Reboot, upgrade.Parts, func(part string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(buildDir, manifest.RoleFile(n.Role, part)))
	}, func(part string, sent int64) {
		ev.emit(Sending{Node: t.Name, Part: part, Sent: sent, Total: total})
	})
	done()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", t.Name, err)
	}
	out.Written, out.WriteSeconds = res, time.Since(writing).Seconds()
	ev.emit(StepDone{Node: t.Name, Text: fmt.Sprintf("wrote slot %s and boot entry %s (%d MiB in %.1f s: %s)", res.Slot, res.Entry, res.Bytes>>20,
		out.WriteSeconds, strings.Join(res.Steps, "; "))})
	if !o.Reboot {
		out.Result, out.Seconds = "written", time.Since(start).Seconds()
		return out, nil
	}
	ev.emit(StepDone{Node: t.Name, Text: "rebooting into build " + img.RoleID})
	settling := time.Now()
	v, err := waitSettled(ctx, t, img.RoleID, o)
	out.Seconds, out.SettleSeconds = time.Since(start).Seconds(), time.Since(settling).Seconds()
	if err != nil {
		return out, err
	}
	out.Running = v.BuildID
	switch {
	case v.BuildID == img.RoleID:
		out.Result = "upgraded"
		ready := time.Now()
		err := waitKubeletReady(ctx, t, o, before)
		out.ReadySeconds, out.Seconds = time.Since(ready).Seconds(), time.Since(start).Seconds()
		return out, err
	case v.Boot != nil && slices.Contains(v.Boot.RolledBack, img.RoleID):
		out.Result, out.Detail = "rolled-back", v.Boot.LastCheck
		return out, fmt.Errorf("node %s: %w (running %s again): %s", t.Name, ErrRolledBack, v.BuildID, v.Boot.LastCheck)
	default:
		return out, fmt.Errorf("node %s runs %s, neither the new build %s nor a recorded rollback", t.Name, v.BuildID, img.RoleID)
	}
}

// RunsSettled: the node runs build and its boot is marked good (not on
// trial, state readable).
func RunsSettled(v *api.NodeVersion, build string) bool {
	return v.BuildID == build && v.Boot != nil && v.Boot.Error == "" && !v.Boot.Trial
}

// waitSettled polls the node, through the reboots between, until it runs
// build with its boot marked good, or runs another build with build
// recorded as rolled back. The old build answering before it reboots is
// neither, so a slow shutdown is not mistaken for an outcome.
func waitSettled(ctx context.Context, t UpgradeTarget, build string, o UpgradeOptions) (*api.NodeVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	// The node answers, then reboots after a delay.
	select {
	case <-ctx.Done():
	case <-time.After(o.every()):
	}
	var settled *api.NodeVersion
	last, err := pollNode(ctx, o, t.Name, func(ctx context.Context) (bool, string) {
		v, err := callNode(ctx, t.DialNode, 10*time.Second, (*api.NodeClient).Version)
		switch {
		case err != nil:
			return false, "unreachable (booting)"
		case v.Boot == nil || v.Boot.Error != "":
			return false, "boot state unknown"
		case v.Boot.Trial:
			return false, fmt.Sprintf("build %s on trial (%s)", v.BuildID, v.Boot.Entry)
		case v.BuildID == build || slices.Contains(v.Boot.RolledBack, build):
			settled = v
			return true, ""
		}
		return false, fmt.Sprintf("still on build %s (rebooting)", v.BuildID)
	})
	if err != nil {
		return nil, fmt.Errorf("node %s did not settle within %s (last: %s)", t.Name, o.Wait, last)
	}
	return settled, nil
}

// waitKubeletReady polls the node's health until its "kubelet" check (a
// node that runs a kubelet reports one: its Kubernetes Node Ready) is
// OK and, with before (its pods before the upgrade), its pods are Ready
// again (podsBack), so a roll takes the next node out only once this one
// serves again: the HA drill's accept after a roll found the last
// worker's Node not Ready, then its Node Ready with the probe's and
// CoreDNS's pods on it still starting. A node without the check has
// nothing to wait for.
func waitKubeletReady(ctx context.Context, t UpgradeTarget, o UpgradeOptions, before []api.PodReadiness) error {
	ctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	ask := (*api.NodeClient).Health
	if before != nil {
		ask = (*api.NodeClient).HealthWithPods
	}
	// An unanswered ask keeps the last answer (a node busy after its
	// reboot is not news).
	detail := "kubelet: unreachable"
	_, err := pollNode(ctx, o, t.Name, func(ctx context.Context) (bool, string) {
		h, err := callNode(ctx, t.DialNode, 10*time.Second, ask)
		if err != nil {
			return false, detail
		}
		i := slices.IndexFunc(h.Checks, func(c api.HealthCheck) bool { return c.Name == "kubelet" })
		if i >= 0 && !h.Checks[i].OK {
			detail = "kubelet: " + h.Checks[i].Detail
			return false, detail
		}
		if i < 0 || before == nil {
			return true, ""
		}
		if waiting := podsBack(before, h.Pods); len(waiting) > 0 {
			detail = fmt.Sprintf("%d pod(s) not Ready again: %s", len(waiting), strings.Join(clipList(waiting), ", "))
			return false, detail
		}
		return true, ""
	})
	if err != nil {
		return fmt.Errorf("node %s runs the new build, but it does not serve as before within %s (last: %s)", t.Name, o.Wait, detail)
	}
	return nil
}

// podsBack is the pods on the node now that are not Ready and that the
// roll waits for: every one but those that were there before the upgrade
// and not Ready then (broken before it; not the upgrade's to wait for).
// A pod evicted and made again under a new name is waited for as new.
func podsBack(before, now []api.PodReadiness) []string {
	notReadyBefore := map[string]bool{}
	for _, p := range before {
		if !p.Ready {
			notReadyBefore[p.Name] = true
		}
	}
	var waiting []string
	for _, p := range now {
		if !p.Ready && !notReadyBefore[p.Name] {
			waiting = append(waiting, p.Name)
		}
	}
	return waiting
}

// every is the settle polls' interval (SettleEvery, default 3 s).
func (o UpgradeOptions) every() time.Duration {
	if o.SettleEvery == 0 {
		return 3 * time.Second
	}
	return o.SettleEvery
}

// pollNode calls try every o.every() until it is done or ctx ends,
// saying each wait (node: why) as an event; on ctx's end it returns the
// last why.
func pollNode(ctx context.Context, o UpgradeOptions, node string, try func(context.Context) (done bool, why string)) (string, error) {
	ev := events{o.Events}
	for {
		done, why := try(ctx)
		if done {
			return "", nil
		}
		ev.wait("%s: %s", node, why)
		select {
		case <-ctx.Done():
			return why, ctx.Err()
		case <-time.After(o.every()):
		}
	}
}

// Roll upgrades the nodes in order, one at a time, and stops at the first
// failure: the nodes after it are not touched. Every outcome reached, the
// failing one included, is reported and returned.
func Roll(ctx context.Context, names []string, one func(context.Context, string) (*Outcome, error), report func(*Outcome)) ([]*Outcome, error) {
	var outs []*Outcome
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return outs, fmt.Errorf("stopped before %s: %w", name, err)
		}
		o, err := one(ctx, name)
		if o != nil {
			outs = append(outs, o)
			if report != nil {
				report(o)
			}
		}
		if err != nil {
			return outs, fmt.Errorf("stopped at %s: %w", name, err)
		}
	}
	return outs, nil
}

// RollOrder is the order a roll upgrades s's nodes in: the spec's, so the
// operator who wrote it decides (the web console rolls in it too).
func RollOrder(s *spec.ClusterSpec) []string {
	names := make([]string, len(s.Topology.Nodes))
	for i, sn := range s.Topology.Nodes {
		names[i] = sn.Name
	}
	return names
}

// upHub is an admin client of the hub cluster up left (its address in
// the state directory).
func (c *Cluster) upHub() (*api.AdminClient, func(), error) {
	hubAddr, err := os.ReadFile(filepath.Join(c.HubDir(), hubAddrFile))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s is not up here (no hub address): %w", c.Spec.Metadata.Name, err)
	}
	c.hubAddr = strings.TrimSpace(string(hubAddr))
	return c.admin()
}

// dialNode reaches a node's API at the address cluster up recorded.
func (c *Cluster) dialNode(name string) (*api.NodeClient, func(), error) {
	addr, err := os.ReadFile(filepath.Join(c.NodeDir(name), "api.addr"))
	if err != nil {
		return nil, nil, fmt.Errorf("node %s has no API address here: %w", name, err)
	}
	return NodeDialer{Addr: strings.TrimSpace(string(addr)), Name: name, Access: c.access()}.Dial()
}

// Upgrade rolls the build in BuildDir through the local cluster's nodes in
// spec order (Roll), each reached at the API address cluster up recorded
// and through the hub it found. With several etcd members and reboots,
// the QuorumGate holds each member's turn until the others are healthy,
// and the roll until it is healthy again.
func (c *Cluster) Upgrade(ctx context.Context, o UpgradeOptions, report func(*Outcome)) ([]*Outcome, error) {
	admin, doneHub, err := c.upHub()
	if err != nil {
		return nil, err
	}
	defer doneHub()
	if o.Events == nil {
		o.Events = c.Events
	}
	one := func(ctx context.Context, name string) (*Outcome, error) {
		return UpgradeNode(ctx, UpgradeTarget{Name: name, Hub: admin, DialNode: func() (*api.NodeClient, func(), error) { return c.dialNode(name) }},
			c.BuildDir, o)
	}
	if g := EtcdQuorum(c.Spec, c.dialNode, o.Wait, o.SettleEvery, o.Events); g != nil && o.Reboot {
		one = g.Wrap(one)
	}
	return Roll(ctx, RollOrder(c.Spec), one, report)
}
