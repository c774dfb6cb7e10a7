package main

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	at := time.Date(2026, 12, 5, 21, 0, 0, 0, time.FixedZone("x", 3600))
	h := handler("probe-7d9f", "w-1", func() time.Time { return at })
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
