package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	at := time.Date(2026, 12, 5, 21, 0, 0, 0, time.FixedZone("x", 3600))
	h := handler("probe-7d9f", "w-1", func() time.Time { return at }, resolver{})
	for _, tt := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/", 200, `{"pod":"probe-7d9f","node":"w-1","time":"2026-12-05T20:00:00Z"}` + "\n"},
		{"GET", "/healthz", 200, "ok\n"},
		{"GET", "/other", 404, ""},
		{"POST", "/", 405, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.code)
		}
		if tt.body != "" && rec.Body.String() != tt.body {
			t.Errorf("%s %s: %q, want %q", tt.method, tt.path, rec.Body, tt.body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var a answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET / is not JSON: %v %q", err, rec.Header())
	}
}

func TestProbeDNS(t *testing.T) {
	var asked []string
	r := resolver{
		lookup: func(_ context.Context, name string) ([]string, error) {
			asked = append(asked, name)
			if name == "kubernetes.default" {
				return []string{"10.96.0.1"}, nil
			}
			return nil, errors.New("lookup " + name + " on 10.96.0.10:53: read udp: i/o timeout")
		},
		nameservers: func() []string { return []string{"10.96.0.10"} },
	}
	h := handler("probe-7d9f", "w-1", time.Now, r)
	get := func(path string) (int, dnsAnswer) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var a dnsAnswer
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return rec.Code, a
	}
	if code, a := get("/dns/kubernetes.default"); code != 200 || !slices.Equal(a.Addrs, []string{"10.96.0.1"}) ||
		a.Error != "" || a.Pod != "probe-7d9f" || a.Node != "w-1" || a.Nameservers[0] != "10.96.0.10" {
		t.Errorf("resolved: %d %+v", code, a)
	}
	// A failed lookup says why, with a 200: the gate reads the body.
	if code, a := get("/dns/probe.kubedos-probe.svc.cluster.local."); code != 200 || len(a.Addrs) != 0 ||
		!strings.Contains(a.Error, "i/o timeout") {
		t.Errorf("failed lookup: %d %+v", code, a)
	}
	// Anything but a DNS name is refused before the resolver sees it.
	for _, bad := range []string{"/dns/" + strings.Repeat("a.", 130) + "b", "/dns/UPPER.case", "/dns/a..b", "/dns/a_b",
		"/dns/%0aevil", "/dns/" + strings.Repeat("x", 64) + ".local"} {
		if code, _ := get(bad); code != 400 {
			t.Errorf("%.40s: %d, want 400", bad, code)
		}
	}
	if len(asked) != 2 {
		t.Errorf("resolver asked %q", asked)
	}
}

func TestNameservers(t *testing.T) {
	f := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(f, []byte("search a.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\nnameserver 10.96.0.11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := nameservers(f); !slices.Equal(got, []string{"10.96.0.10", "10.96.0.11"}) {
		t.Errorf("nameservers: %q", got)
	}
	if got := nameservers(f + ".missing"); len(got) != 1 || !strings.Contains(got[0], "no such file") {
		t.Errorf("missing file: %q", got)
	}
}
