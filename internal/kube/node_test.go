package kube

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// The pods bound to w-1: a ReplicaSet's, one its budget refuses twice,
// a DaemonSet's and a mirror pod (skipped), one gone before its eviction,
// one its budget never lets go, and one with a name no path may hold.
const w1PodsJSON = `{"kind":"PodList","apiVersion":"v1","items":[
 {"metadata":{"name":"web-1","namespace":"default","ownerReferences":[{"kind":"ReplicaSet","name":"web","controller":true}]}},
 {"metadata":{"name":"db-0","namespace":"default","ownerReferences":[{"kind":"StatefulSet","name":"db","controller":true}]}},
 {"metadata":{"name":"kube-proxy-x","namespace":"kube-system","ownerReferences":[{"kind":"DaemonSet","name":"kube-proxy","controller":true}]}},
 {"metadata":{"name":"static-w-1","namespace":"kube-system","annotations":{"kubernetes.io/config.mirror":"abc"}}},
 {"metadata":{"name":"gone","namespace":"default"}},
 {"metadata":{"name":"stuck","namespace":"default"}},
 {"metadata":{"name":"../../nodes/cp-1","namespace":"default"}}]}`

const budgetRefusal = `{"kind":"Status","status":"Failure","reason":"TooManyRequests","message":"Cannot evict pod as it would violate the pod's disruption budget.","code":429}`

func drainAPI(t *testing.T, p *testPKI) *fakeAPI {
	t.Helper()
	return newFakeAPIFunc(t, p, func(key string, n int) (reply, bool) {
		created := reply{201, `{"kind":"Status","status":"Success"}`}
		switch key {
		case "PATCH /api/v1/nodes/w-1":
			return reply{200, `{"kind":"Node"}`}, true
		case "DELETE /api/v1/nodes/w-1":
			return reply{200, `{"kind":"Status","status":"Success"}`}, true
		case "GET /api/v1/pods":
			return reply{200, w1PodsJSON}, true
		case "POST /api/v1/namespaces/default/pods/web-1/eviction":
			return created, true
		case "POST /api/v1/namespaces/default/pods/db-0/eviction":
			if n < 2 {
				return reply{429, budgetRefusal}, true
			}
			return created, true
		case "POST /api/v1/namespaces/default/pods/stuck/eviction":
			return reply{429, budgetRefusal}, true
		}
		return reply{}, false
	})
}

func TestCordonDrainDelete(t *testing.T) {
	p := newTestPKI(t)
	f := drainAPI(t, p)
	c, err := New(Credentials{Server: f.srv.URL, CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) bool { slept = append(slept, d); return true }
	ctx := context.Background()

	if err := c.Cordon(ctx, "w-1"); err != nil {
		t.Fatalf("Cordon: %v", err)
	}
	if s := f.last(); s.method != "PATCH" || s.path != "/api/v1/nodes/w-1" || s.contentType != "application/merge-patch+json" ||
		s.body != `{"spec":{"unschedulable":true}}` {
		t.Errorf("Cordon sent %+v", s)
	}
	if err := c.Cordon(ctx, "w-9"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Cordon of a node with no Node object: %v, want ErrNotFound", err)
	}

	n := f.count()
	d, err := c.Drain(ctx, "w-1")
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "2 pod(s) not evicted") ||
		!strings.Contains(err.Error(), "disruption budget") {
		t.Errorf("Drain: %v, want the budget's refusal, classed ErrUnavailable", err)
	}
	want := Drained{
		Evicted: []string{"default/web-1", "default/gone", "default/db-0"},
		Skipped: []string{"kube-system/kube-proxy-x (DaemonSet pod)", "kube-system/static-w-1 (mirror pod)"},
	}
	if !reflect.DeepEqual(d.Evicted, want.Evicted) || !reflect.DeepEqual(d.Skipped, want.Skipped) {
		t.Errorf("Drain = %+v, want evicted %v, skipped %v", d, want.Evicted, want.Skipped)
	}
	if len(d.Refused) != 2 || !strings.Contains(d.Refused[0], "not a valid pod name") ||
		!strings.HasPrefix(d.Refused[1], "default/stuck: ") || !strings.Contains(d.Refused[1], "429 TooManyRequests") {
		t.Errorf("Refused = %q", d.Refused)
	}
	if len(slept) != evictAttempts-1 || slept[0] != evictRetry {
		t.Errorf("waited %v between attempts, want %d × %v", slept, evictAttempts-1, evictRetry)
	}

	f.mu.Lock()
	got := f.got[n:]
	f.mu.Unlock()
	if got[0].method != "GET" || got[0].path != "/api/v1/pods" || got[0].query != "fieldSelector=spec.nodeName%3Dw-1" {
		t.Errorf("pods listed with %+v", got[0])
	}
	count := map[string]int{}
	for _, s := range got[1:] {
		count[s.path]++
		if s.method != "POST" || !strings.HasSuffix(s.path, "/eviction") || s.contentType != "application/json" {
			t.Errorf("eviction sent %+v", s)
			continue
		}
		var ev struct {
			APIVersion, Kind string
			Metadata         struct{ Name, Namespace string }
		}
		name := strings.TrimSuffix(strings.TrimPrefix(s.path, "/api/v1/namespaces/default/pods/"), "/eviction")
		if err := json.Unmarshal([]byte(s.body), &ev); err != nil || ev.APIVersion != "policy/v1" || ev.Kind != "Eviction" ||
			ev.Metadata.Name != name || ev.Metadata.Namespace != "default" {
			t.Errorf("eviction body %q for %s (%v)", s.body, s.path, err)
		}
	}
	wantCount := map[string]int{
		"/api/v1/namespaces/default/pods/web-1/eviction": 1,
		"/api/v1/namespaces/default/pods/gone/eviction":  1,
		"/api/v1/namespaces/default/pods/db-0/eviction":  3,
		"/api/v1/namespaces/default/pods/stuck/eviction": evictAttempts,
	}
	if !reflect.DeepEqual(count, wantCount) {
		t.Errorf("evictions per pod %v, want %v (none for DaemonSet, mirror or invalid pods)", count, wantCount)
	}

	if err := c.DeleteNode(ctx, "w-1"); err != nil {
		t.Errorf("DeleteNode: %v", err)
	}
	if s := f.last(); s.method != "DELETE" || s.path != "/api/v1/nodes/w-1" {
		t.Errorf("DeleteNode sent %+v", s)
	}
	if err := c.DeleteNode(ctx, "w-9"); err != nil {
		t.Errorf("DeleteNode of a Node already gone: %v, want nil", err)
	}

	n = f.count()
	for _, bad := range []string{"../nodes", "a/b", ""} {
		if err := c.Cordon(ctx, bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Cordon(%q): %v", bad, err)
		}
		if _, err := c.Drain(ctx, bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Drain(%q): %v", bad, err)
		}
		if err := c.DeleteNode(ctx, bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("DeleteNode(%q): %v", bad, err)
		}
	}
	if f.count() != n {
		t.Errorf("%d requests sent for invalid node names", f.count()-n)
	}
}

// A drain whose ctx ends while a budget refuses stops retrying and says
// so; an error other than a budget's is not retried.
func TestDrainGivesUp(t *testing.T) {
	p := newTestPKI(t)
	f := newFakeAPI(t, p, map[string]reply{
		"GET /api/v1/pods": {200, `{"items":[{"metadata":{"name":"stuck","namespace":"default"}},{"metadata":{"name":"broken","namespace":"default"}}]}`},
		"POST /api/v1/namespaces/default/pods/stuck/eviction":  {429, budgetRefusal},
		"POST /api/v1/namespaces/default/pods/broken/eviction": {500, `{"kind":"Status","status":"Failure","reason":"InternalError","message":"This pod has more than one PodDisruptionBudget","code":500}`},
	})
	c, err := New(Credentials{Server: f.srv.URL, CA: p.caPEM, Cert: p.clientCert, Key: p.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sleep = func(ctx context.Context, _ time.Duration) bool { cancel(); return ctx.Err() == nil }
	d, err := c.Drain(ctx, "w-1")
	if !errors.Is(err, context.Canceled) || len(d.Evicted) != 0 || len(d.Refused) != 2 {
		t.Fatalf("Drain = %+v, %v; want both refused and the ctx's end", d, err)
	}
	if !strings.Contains(d.Refused[0], "default/broken: ") || !strings.Contains(d.Refused[0], "more than one PodDisruptionBudget") ||
		!strings.Contains(d.Refused[1], "default/stuck: ") || !strings.Contains(d.Refused[1], "gave up: context canceled") {
		t.Errorf("Refused = %q", d.Refused)
	}
	if f.count() != 3 {
		t.Errorf("%d requests, want the list and one eviction each", f.count())
	}
}
