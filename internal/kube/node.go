package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// Eviction retries: a PodDisruptionBudget refusal (429) is retried this
// many times in all, evictRetry apart, then reported. The caller's ctx
// bounds the whole drain as well.
const (
	evictAttempts = 5
	evictRetry    = 5 * time.Second
)

// mirrorAnnotation marks a static pod's mirror: the kubelet owns it, the
// API cannot evict it.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// nodePath is the path of Node name, refused when name could leave its
// path segment.
func nodePath(name string) (string, error) {
	if !segment(name) {
		return "", fmt.Errorf("%w: node name %q is not a valid name", errdefs.ErrInvalid, clip(name))
	}
	return "/api/v1/nodes/" + name, nil
}

// Cordon marks node unschedulable (spec.unschedulable, a JSON merge
// patch): the scheduler places nothing new on it. A node with no Node
// object is ErrNotFound.
func (c *Client) Cordon(ctx context.Context, node string) error {
	path, err := nodePath(node)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPatch, path, nil, "application/merge-patch+json", []byte(`{"spec":{"unschedulable":true}}`))
	return err
}

// DeleteNode deletes node's Node object; one already gone is not an error.
func (c *Client) DeleteNode(ctx context.Context, node string) error {
	path, err := nodePath(node)
	if err != nil {
		return err
	}
	return c.Delete(ctx, path)
}

// Drained is what Drain did, each pod as namespace/name.
type Drained struct {
	// Evicted: eviction accepted (or the pod already gone). The pods
	// terminate as their grace allows; Drain does not wait for them.
	Evicted []string `json:"evicted,omitempty"`
	// Skipped: mirror pods and DaemonSet pods, which eviction cannot move.
	Skipped []string `json:"skipped,omitempty"`
	// Refused: not evicted, with why (a disruption budget still refusing
	// after the retries, the ctx ending, another API error).
	Refused []string `json:"refused,omitempty"`
}

// nodePod is what Drain reads of a pod.
type nodePod struct {
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		Annotations     map[string]string `json:"annotations"`
		OwnerReferences []struct {
			Kind       string `json:"kind"`
			Controller *bool  `json:"controller"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
}

func (p nodePod) id() string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

// skip says why eviction does not apply to p, or "".
func (p nodePod) skip() string {
	if _, ok := p.Metadata.Annotations[mirrorAnnotation]; ok {
		return "mirror pod"
	}
	for _, o := range p.Metadata.OwnerReferences {
		if o.Kind == "DaemonSet" && o.Controller != nil && *o.Controller {
			return "DaemonSet pod"
		}
	}
	return ""
}

// Drain evicts every pod bound to node through the Eviction API
// (policy/v1), so disruption budgets are honoured, skipping mirror and
// DaemonSet pods. A budget's refusal (429) is retried a bounded number of
// times within ctx, then reported in Refused. The error is nil only when
// every pod not skipped was evicted; Drained says what was done either
// way.
func (c *Client) Drain(ctx context.Context, node string) (Drained, error) {
	var out Drained
	if _, err := nodePath(node); err != nil {
		return out, err
	}
	q := url.Values{"fieldSelector": {"spec.nodeName=" + node}}
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/pods", q, "", nil)
	if err != nil {
		return out, err
	}
	var list struct {
		Items []nodePod `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return out, fmt.Errorf("kube: GET /api/v1/pods: %w", err)
	}
	var pending []nodePod
	for _, p := range list.Items {
		switch {
		case !segment(p.Metadata.Name) || !segment(p.Metadata.Namespace):
			out.Refused = append(out.Refused, clip(p.id())+": not a valid pod name")
		case p.skip() != "":
			out.Skipped = append(out.Skipped, p.id()+" ("+p.skip()+")")
		default:
			pending = append(pending, p)
		}
	}
	// refusedBy is each pending pod's last refusal, for the report.
	refusedBy := map[string]error{}
	var last error
	for attempt := 1; len(pending) > 0; attempt++ {
		var again []nodePod
		for _, p := range pending {
			err := c.evict(ctx, p)
			var ae *APIError
			switch {
			case err == nil || errors.Is(err, errdefs.ErrNotFound):
				out.Evicted = append(out.Evicted, p.id())
			case errors.As(err, &ae) && ae.Code == http.StatusTooManyRequests && attempt < evictAttempts && ctx.Err() == nil:
				again, refusedBy[p.id()] = append(again, p), err
			default:
				out.Refused, last = append(out.Refused, p.id()+": "+err.Error()), err
			}
		}
		pending = again
		if len(pending) > 0 && !c.wait(ctx, evictRetry) {
			for _, p := range pending {
				last = fmt.Errorf("%w (gave up: %w)", refusedBy[p.id()], ctx.Err())
				out.Refused = append(out.Refused, p.id()+": "+last.Error())
			}
			pending = nil
		}
	}
	if len(out.Refused) > 0 {
		if last == nil {
			last = errdefs.ErrInvalid
		}
		return out, fmt.Errorf("drain %s: %d pod(s) not evicted: %w", node, len(out.Refused), last)
	}
	return out, nil
}

// evict posts p's Eviction.
func (c *Client) evict(ctx context.Context, p nodePod) error {
	ns, name := p.Metadata.Namespace, p.Metadata.Name
	body, err := json.Marshal(map[string]any{"apiVersion": "policy/v1", "kind": "Eviction",
		"metadata": map[string]string{"name": name, "namespace": ns}})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPost, "/api/v1/namespaces/"+ns+"/pods/"+name+"/eviction", nil, "application/json", body)
	return err
}

// wait sleeps d (c.sleep in tests), false when ctx ended first.
func (c *Client) wait(ctx context.Context, d time.Duration) bool {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
