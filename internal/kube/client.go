package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/errdefs"
)

// Bounds on what the API server sends back.
const (
	// maxBody bounds a successful response (a list of every pod of a
	// namespace fits many times over).
	maxBody = 32 << 20
	// maxErrorBody bounds the body read for an error's Status.
	maxErrorBody = 64 << 10
	// maxMessage bounds the API's message carried in an error.
	maxMessage = 512
)

// FieldManager is who server-side apply records as owning the fields
// kubedos sets.
const FieldManager = "kubedos"

// Client calls one API server with one client certificate. Its methods
// are safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
	// sleep waits between eviction retries (nil: a timer); tests step it.
	sleep func(ctx context.Context, d time.Duration) bool
}

// New makes a client from explicit credentials.
func New(c Credentials) (*Client, error) {
	u, err := url.Parse(c.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("%w: server %q is not https://host[:port]", errdefs.ErrInvalid, clip(c.Server))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CA) {
		return nil, fmt.Errorf("%w: the CA holds no PEM certificate", errdefs.ErrInvalid)
	}
	pair, err := tls.X509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: client certificate: %w", errdefs.ErrInvalid, err)
	}
	conf := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	// No proxy from the environment: the API server is on the cluster's
	// own networks, and a client certificate goes to it alone.
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true, Proxy: nil,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second, MaxIdleConnsPerHost: 4}
	u.Path = ""
	return &Client{base: u, http: &http.Client{Transport: tr}}, nil
}

// NewFromKubeconfig is New over LoadKubeconfig(path).
func NewFromKubeconfig(path string) (*Client, error) {
	c, err := LoadKubeconfig(path)
	if err != nil {
		return nil, err
	}
	cl, err := New(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cl, nil
}

// Server is the API server's URL.
func (c *Client) Server() string { return c.base.String() }

// APIError is a response other than 2xx: the HTTP status and the API's
// Status (reason and message, bounded). errors.Is matches its class:
// errdefs.ErrNotFound for 404, ErrPermission for 403, ….
type APIError struct {
	Method, Path string
	Code         int
	Reason       string
	Message      string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("kube: %s %s: %d", e.Method, e.Path, e.Code)
	if e.Reason != "" {
		s += " " + e.Reason
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap is the error's class.
func (e *APIError) Unwrap() error {
	switch {
	case e.Code == http.StatusNotFound:
		return errdefs.ErrNotFound
	case e.Code == http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case e.Code == http.StatusForbidden:
		return errdefs.ErrPermission
	case e.Code == http.StatusConflict && e.Reason == "AlreadyExists":
		return errdefs.ErrAlreadyExists
	case e.Code == http.StatusConflict:
		return errdefs.ErrPrecondition
	case e.Code == http.StatusTooManyRequests || e.Code >= 500:
		return errdefs.ErrUnavailable
	case e.Code >= 400:
		return errdefs.ErrInvalid
	}
	return errdefs.ErrInternal
}

// status is the API's metav1.Status, as far as errors need it.
type status struct {
	Kind    string `json:"kind"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// do sends one request and returns the body of a 2xx response.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, contentType string, body []byte) ([]byte, error) {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: API path %q must be absolute, without .., query or fragment", errdefs.ErrInvalid, clip(path))
	}
	u := *c.base
	u.Path = path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("kube: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kubedos")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kube: %s %s: %w", method, path, ctx.Err())
		}
		return nil, fmt.Errorf("%w: kube: %s %s: %w", errdefs.ErrUnavailable, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		e := &APIError{Method: method, Path: path, Code: resp.StatusCode}
		var st status
		if json.Unmarshal(raw, &st) == nil && st.Kind == "Status" {
			e.Reason, e.Message = clip(st.Reason), clip(st.Message)
		} else {
			e.Message = clip(strings.TrimSpace(string(raw)))
		}
		return nil, e
	}
	raw, err := boundedio.ReadAll(resp.Body, maxBody, "the response")
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("%w: kube: %s %s: %w", errdefs.ErrExhausted, method, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: kube: %s %s: %w", errdefs.ErrUnavailable, method, path, err)
	}
	return raw, nil
}

// Ready is nil when the API server's /readyz says ok; else an error with
// the checks it reports failing (bounded).
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/readyz", nil, "", nil)
	return err
}

// Get reads path (e.g. /api/v1/namespaces/kube-system) into out (a
// pointer JSON decodes into; nil discards the body).
func (c *Client) Get(ctx context.Context, path string, out any) error {
	raw, err := c.do(ctx, http.MethodGet, path, nil, "", nil)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("kube: GET %s: %w", path, err)
	}
	return nil
}

// Delete deletes the object at path. An object already gone is not an
// error: delete converges on absence.
func (c *Client) Delete(ctx context.Context, path string) error {
	_, err := c.do(ctx, http.MethodDelete, path, nil, "", nil)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}

// Apply server-side applies obj (one object, YAML or JSON) at the path
// its apiVersion, kind, namespace and name give (ObjectPath), as field
// manager kubedos, forcing ownership of the fields it sets: kubedos is
// the source of truth for what it applies.
func (c *Client) Apply(ctx context.Context, obj []byte) error {
	path, err := ObjectPath(obj)
	if err != nil {
		return err
	}
	q := url.Values{"fieldManager": {FieldManager}, "force": {"true"}}
	_, err = c.do(ctx, http.MethodPatch, path, q, "application/apply-patch+yaml", obj)
	return err
}

// clip bounds s and quotes what is not printable, so an API server's
// message cannot flood or shape a log line.
func clip(s string) string {
	if len(s) > maxMessage {
		s = strings.ToValidUTF8(s[:maxMessage], "") + "…"
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
