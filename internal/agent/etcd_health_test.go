package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// kubedosd asks its etcd member's /health: healthy only on "true"; a
// member without a leader, an answer that is not etcd's, or none, is
// reported with why; a node without etcd has no such check.
func TestEtcdHealth(t *testing.T) {
	var body atomic.Value
	body.Store(`{"health":"true","reason":""}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		b := body.Load().(string)
		if !strings.Contains(b, `"true"`) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, b)
	}))
	defer srv.Close()

	k, _, _ := newTestRunner(t, kubeTestPlan(t, "cp-1"))
	k.etcdHealth = srv.URL + "/health"
	ctx := context.Background()
	if h := k.EtcdHealth(ctx); !h.Known || h.Err != nil {
		t.Errorf("healthy member: %+v", h)
	}
	for _, c := range []struct{ body, want string }{
		{`{"health":"false","reason":"RAFT NO LEADER"}`, "RAFT NO LEADER"},
		{`<html>proxy</html>`, "/health answered 503"},
		{`{"health":"false","reason":"` + strings.Repeat("x", 5000) + `"}`, "etcd /health"},
	} {
		body.Store(c.body)
		if h := k.EtcdHealth(ctx); !h.Known || h.Err == nil || !strings.Contains(h.Err.Error(), c.want) || len(h.Err.Error()) > 300 {
			t.Errorf("answer %.40q: %+v, want an error with %q, bounded", c.body, h, c.want)
		}
	}
	srv.Close()
	if h := k.EtcdHealth(ctx); !h.Known || h.Err == nil || !strings.Contains(h.Err.Error(), "etcd member cp-1") {
		t.Errorf("no member listening: %+v", h)
	}
	w, _, _ := newTestRunner(t, kubeTestPlan(t, "w-1"))
	if h := w.EtcdHealth(ctx); h.Known {
		t.Errorf("a worker reported etcd health: %+v", h)
	}
}
