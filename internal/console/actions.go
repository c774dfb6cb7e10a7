// The node actions: each a POST that the operator's role must allow (by
// the hub's own table), with the session's CSRF token and the node's name
// typed as confirmation, done through the library call the CLI's command
// makes, so the hub or the node checks again and audits it under the
// operator.

package console

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
)

// actions maps an action's path to what the role table must allow.
var actions = map[string]pki.Action{
	"revoke":  pki.ActionRevoke,
	"fence":   pki.ActionFence,
	"replace": pki.ActionReplace,
	"upgrade": pki.ActionUpgrade,
	"restart": pki.ActionRestartService,
}

// act checks an action request, then does it.
func (c *Console) act(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	need, ok := actions[action]
	if !ok {
		http.Error(w, "unknown action", http.StatusNotFound)
		return
	}
	o := op(r)
	if !pki.Allows(o.Role, need) {
		http.Error(w, fmt.Sprintf("forbidden: role %s may not %s (the console acts as %s)", o.Role, action, o.Name), http.StatusForbidden)
		return
	}
	if !c.readForm(w, r) {
		return
	}
	if r.PostForm.Get("confirm") != name {
		http.Error(w, fmt.Sprintf("not done: type the node's name %q to confirm", name), http.StatusBadRequest)
		return
	}
	switch action {
	case "upgrade":
		c.upgrade(w, r, name)
	case "restart":
		c.restart(w, r, name)
	default:
		c.retire(w, r, name, cluster.NodeVerb(action))
	}
}

// readForm reads an action's form, bounded, and checks its CSRF token;
// false: refused, and the answer written.
func (c *Console) readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+clip(err.Error(), 200), http.StatusBadRequest)
		return false
	}
	want := c.csrf(who(r))
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(want)) != 1 {
		http.Error(w, "forbidden: bad or missing CSRF token", http.StatusForbidden)
		return false
	}
	return true
}

// retire revokes, fences or replaces the node as kubedos node VERB does.
func (c *Console) retire(w http.ResponseWriter, r *http.Request, name string, verb cluster.NodeVerb) {
	o := op(r)
	if o.Act == nil {
		http.Error(w, "this console takes no node actions", http.StatusNotImplemented)
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if reason == "" {
		reason = "from the web console"
	}
	out, err := o.Act(r.Context(), cluster.NodeAction{Verb: verb, Name: name, Reason: clip(reason, maxFormReason)})
	if out.Node == nil && err != nil {
		c.hubError(w, r, err)
		return
	}
	// Done at the hub; a later step (Kubernetes, with a spec) that failed
	// does not undo it and is in the outcome, as the CLI prints it.
	// The live view shows the change at once rather than at the next poll.
	_ = c.live.refresh(r.Context(), o.Hub)
	http.Redirect(w, r, "/nodes/"+pathEscape(name)+"?done="+string(verb), http.StatusSeeOther)
}

// upgrade starts the node's upgrade to a build the console was given
// (never a path from the form); the hub checks the build's signature.
func (c *Console) upgrade(w http.ResponseWriter, r *http.Request, name string) {
	if c.cfg.DialNode == nil {
		http.Error(w, "this console reaches no node API: no upgrades", http.StatusNotImplemented)
		return
	}
	id := r.PostForm.Get("build")
	b, ok := c.buildByID(id)
	if !ok {
		http.Error(w, fmt.Sprintf("not done: %q is not a build this console was given", clip(id, 200)), http.StatusBadRequest)
		return
	}
	n, err := op(r).Hub.GetNode(r.Context(), name)
	if err != nil {
		c.hubError(w, r, err)
		return
	}
	img, ok := b.Role(n.Role)
	if !ok {
		http.Error(w, fmt.Sprintf("not done: build %s has no image for role %q", b.BuildID, n.Role), http.StatusBadRequest)
		return
	}
	if err := c.startUpgrade(op(r), name, b, img); err != nil {
		http.Error(w, "not done: "+err.Error(), http.StatusConflict)
		return
	}
	http.Redirect(w, r, "/upgrades", http.StatusSeeOther)
}

// restart restarts one of the services the node reports restartable, as
// kubedos node restart-service does; the node checks its allow-list again
// and records the call under the operator's name.
func (c *Console) restart(w http.ResponseWriter, r *http.Request, name string) {
	if c.cfg.DialNode == nil {
		http.Error(w, "this console reaches no node API", http.StatusNotImplemented)
		return
	}
	unit := r.PostForm.Get("service")
	ctx, cancel := context.WithTimeout(r.Context(), nodeAPITimeout)
	units, err := c.services(ctx, name)
	cancel()
	if err != nil {
		c.nodeError(w, r, name, err)
		return
	}
	if !slices.ContainsFunc(units, func(u api.Unit) bool { return u.Restartable && u.Name == unit }) {
		http.Error(w, fmt.Sprintf("not done: %s does not let an operator restart %q", name, clip(unit, 200)), http.StatusBadRequest)
		return
	}
	cl, done, err := c.cfg.DialNode(name)
	if err != nil {
		c.nodeError(w, r, name, err)
		return
	}
	defer done()
	ctx, cancel = context.WithTimeout(r.Context(), restartTimeout)
	defer cancel()
	if _, err := cl.RestartService(ctx, unit); err != nil {
		c.nodeError(w, r, name, err)
		return
	}
	http.Redirect(w, r, "/nodes/"+pathEscape(name)+"?done=restart&unit="+url.QueryEscape(unit), http.StatusSeeOther)
}

// nodeError shows a node API failure (the node is not the hub: a refusal
// there is its own).
func (c *Console) nodeError(w http.ResponseWriter, r *http.Request, name string, err error) {
	c.hubError(w, r, fmt.Errorf("node %s: %w", name, errdefs.FromGRPC(err)))
}
