package dashboards

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// promAPI answers every call with body and status, recording the form.
func promAPI(t *testing.T, status int, body string) (*Client, *http.Request) {
	t.Helper()
	got := &http.Request{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		*got = *r
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL+"/prom/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c, got
}

func TestClientQuery(t *testing.T) {
	c, req := promAPI(t, 200, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"state":"enrolled"},"value":[1767225600.5,"3"]},
		{"metric":{"state":"odd"},"value":[1767225600.5,"NaN"]},
		{"metric":{},"value":[1767225600.5,"+Inf"]}]}}`)
	at := time.Unix(1767225600, 500e6)
	s, err := c.Query(context.Background(), `max(kubedos_hub_nodes)`, at)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != http.MethodPost || req.URL.Path != "/prom/api/v1/query" || req.Form.Get("query") != "max(kubedos_hub_nodes)" || req.Form.Get("time") != "1767225600.500" {
		t.Errorf("request %s %s form %v", req.Method, req.URL.Path, req.Form)
	}
	if len(s) != 3 || s[0].Labels["state"] != "enrolled" || s[0].Points[0].V != 3 || !s[0].Points[0].T.Equal(at) {
		t.Fatalf("series %+v", s)
	}
	if !math.IsNaN(s[1].Points[0].V) || !math.IsInf(s[2].Points[0].V, 1) {
		t.Errorf("NaN and +Inf: %v %v", s[1].Points, s[2].Points)
	}
}

func TestClientQueryRange(t *testing.T) {
	c, req := promAPI(t, 200, `{"status":"success","data":{"resultType":"matrix","result":[
		{"metric":{"check":"pcr-policy"},"values":[[100,"1"],[115,"2"],[130,"4"]]}]}}`)
	s, err := c.QueryRange(context.Background(), "q", time.Unix(100, 0), time.Unix(130, 0), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.Path != "/prom/api/v1/query_range" || req.Form.Get("start") != "100.000" || req.Form.Get("end") != "130.000" || req.Form.Get("step") != "15" {
		t.Errorf("request %s form %v", req.URL.Path, req.Form)
	}
	if len(s) != 1 || len(s[0].Points) != 3 || s[0].Points[2].V != 4 || s[0].Points[2].T.Unix() != 130 {
		t.Errorf("series %+v", s)
	}
	if _, err := c.QueryRange(context.Background(), "q", time.Unix(130, 0), time.Unix(100, 0), time.Second); err == nil {
		t.Error("an empty range was sent")
	}
}

func TestClientScalar(t *testing.T) {
	c, _ := promAPI(t, 200, `{"status":"success","data":{"resultType":"scalar","result":[100,"42"]}}`)
	s, err := c.Query(context.Background(), "42", time.Unix(100, 0))
	if err != nil || len(s) != 1 || s[0].Points[0].V != 42 {
		t.Errorf("scalar: %+v, %v", s, err)
	}
}

func TestClientErrors(t *testing.T) {
	big := `{"status":"success","data":{"resultType":"vector","result":[` + strings.Repeat(`{"metric":{"a":"b"},"value":[1,"1"]},`, MaxResponse/36) + `{"metric":{},"value":[1,"1"]}]}}`
	for _, tt := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"prometheus refuses", `{"status":"error","errorType":"bad_data","error":"parse error at char 4"}`, 400, `"sum(": HTTP 400: bad_data: parse error at char 4`},
		{"not the API", `<html>bad gateway</html>`, 502, `HTTP 502, not an API answer`},
		{"string result", `{"status":"success","data":{"resultType":"string","result":[1,"x"]}}`, 200, `result type "string"`},
		{"bad value", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}}`, 200, `sample value "one"`},
		{"too big", big, 200, "answer over 8 MiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := promAPI(t, tt.status, tt.body)
			_, err := c.Query(context.Background(), "sum(", time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `prometheus query "sum("`) {
				t.Errorf("error %v, want it to name the query and say %q", err, tt.want)
			}
		})
	}
}

func TestClientContext(t *testing.T) {
	c, _ := promAPI(t, 200, `{}`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Query(ctx, "up", time.Now()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestNewClient(t *testing.T) {
	for _, bad := range []string{"", "localhost:9090", "ftp://h/", "http://", "http://h:9090/?x=1", "http://h:9090/#f", "http://[::1"} {
		if _, err := NewClient(bad, nil); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
	if _, err := NewClient("https://10.0.0.5:9090", nil); err != nil {
		t.Error(err)
	}
}
