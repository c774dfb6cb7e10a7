// A client of Prometheus's HTTP query API, written here: two endpoints and
// their JSON, where client_golang's api package would bring
// prometheus/common's model and its dependencies for the same two calls.

package dashboards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxResponse bounds what the client reads of one answer: a query over
// every node's label sets fits many times over, a runaway one fails with
// an error naming it instead of filling memory.
const MaxResponse = 8 << 20

// Series is one labelled series of a query's result: one point for an
// instant query, one per step for a range query.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Client queries one Prometheus; make it with NewClient.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// NewClient is a client of the Prometheus at base (http://host:9090, or
// under a path prefix). hc carries TLS or a plane-bound transport; nil is
// http.DefaultClient.
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus URL %q: want http://host:port or https://host:port", base)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("prometheus URL %q: no query or fragment, please", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, hc: hc}, nil
}

// Query evaluates q at at (/api/v1/query).
func (c *Client) Query(ctx context.Context, q string, at time.Time) ([]Series, error) {
	v := url.Values{"query": {q}, "time": {formatTime(at)}}
	return c.do(ctx, "query", q, v)
}

// QueryRange evaluates q from start to end every step (/api/v1/query_range).
func (c *Client) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	if step <= 0 || !end.After(start) {
		return nil, fmt.Errorf("prometheus query %q: range %s to %s step %s is empty", q, start, end, step)
	}
	v := url.Values{"query": {q}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	return c.do(ctx, "query_range", q, v)
}

// answer is the API's envelope; data.result's shape depends on resultType.
type answer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// do POSTs the form (a query as long as a page's is no URL's business).
func (c *Client) do(ctx context.Context, endpoint, q string, form url.Values) ([]Series, error) {
	u := *c.base
	u.Path += "/api/v1/" + endpoint
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", q, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", q, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("prometheus query %q: reading the answer: %w", q, err)
	}
	if len(body) > MaxResponse {
		return nil, fmt.Errorf("prometheus query %q: answer over %d MiB, refused", q, MaxResponse>>20)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		// Not the API: a proxy's error page, or the wrong URL.
		return nil, fmt.Errorf("prometheus query %q: HTTP %d, not an API answer: %w", q, res.StatusCode, err)
	}
	if a.Status != "success" {
		return nil, fmt.Errorf("prometheus query %q: HTTP %d: %s: %s", q, res.StatusCode, a.ErrorType, clip(a.Error, 512))
	}
	s, err := decodeResult(a.Data.ResultType, a.Data.Result)
	if err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", q, err)
	}
	return s, nil
}

// sample is Prometheus's [unix seconds, "value"].
type sample [2]json.RawMessage

func (s sample) point() (Point, error) {
	var ts float64
	var v string
	if err := json.Unmarshal(s[0], &ts); err != nil {
		return Point{}, fmt.Errorf("sample time: %w", err)
	}
	if err := json.Unmarshal(s[1], &v); err != nil {
		return Point{}, fmt.Errorf("sample value: %w", err)
	}
	f, err := strconv.ParseFloat(v, 64) // also NaN, +Inf, -Inf as Prometheus writes them
	if err != nil {
		return Point{}, fmt.Errorf("sample value %q: %w", clip(v, 64), err)
	}
	sec, frac := math.Modf(ts)
	return Point{T: time.Unix(int64(sec), int64(math.Round(frac*1e3))*1e6).UTC(), V: f}, nil
}

func decodeResult(kind string, raw json.RawMessage) ([]Series, error) {
	switch kind {
	case "vector":
		var r []struct {
			Metric map[string]string `json:"metric"`
			Value  sample            `json:"value"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("vector result: %w", err)
		}
		out := make([]Series, 0, len(r))
		for _, e := range r {
			p, err := e.Value.point()
			if err != nil {
				return nil, err
			}
			out = append(out, Series{Labels: e.Metric, Points: []Point{p}})
		}
		return out, nil
	case "matrix":
		var r []struct {
			Metric map[string]string `json:"metric"`
			Values []sample          `json:"values"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("matrix result: %w", err)
		}
		out := make([]Series, 0, len(r))
		for _, e := range r {
			s := Series{Labels: e.Metric, Points: make([]Point, 0, len(e.Values))}
			for _, v := range e.Values {
				p, err := v.point()
				if err != nil {
					return nil, err
				}
				s.Points = append(s.Points, p)
			}
			out = append(out, s)
		}
		return out, nil
	case "scalar":
		var s sample
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("scalar result: %w", err)
		}
		p, err := s.point()
		if err != nil {
			return nil, err
		}
		return []Series{{Labels: map[string]string{}, Points: []Point{p}}}, nil
	}
	return nil, errors.New("result type " + strconv.Quote(clip(kind, 32)) + " is not vector, matrix or scalar")
}

// formatTime is Unix seconds with milliseconds, as the API takes them.
func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1e3, 'f', 3, 64)
}
