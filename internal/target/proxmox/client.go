// Package proxmox deploys a cluster's nodes as VMs on a Proxmox VE node
// through its HTTP API, authenticated with an API token: images uploaded as
// import volumes (checked by Proxmox against their SHA-256), VMs created
// from them with OVMF and the platform's Secure Boot keys, a TPM 2.0 whose
// state kubedos made (so its EK is known before the first boot) and the
// node's identity in SMBIOS.
package proxmox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// Client talks to one Proxmox VE node of a cluster's API.
type Client struct {
	base *url.URL // …/api2/json
	node string
	auth string
	http *http.Client
	// PollEvery is how often a task's status is read while it runs.
	PollEvery time.Duration
}

// New returns a client for the API at apiURL (https://host:8006/api2/json),
// acting on node. fingerprint, when set, pins the server's certificate by
// its SHA-256 (Proxmox VE's certificates are self-signed by default);
// otherwise the system's CAs verify it.
func New(apiURL, node, token string, fingerprint []byte) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("proxmox API URL %q: want https://host:8006/api2/json", apiURL)
	}
	if !strings.HasSuffix(u.Path, "/api2/json") {
		u.Path += "/api2/json"
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(fingerprint) > 0 {
		want := slices.Clone(fingerprint)
		// Chain verification is replaced by the pin, not skipped: the
		// handshake fails unless the leaf is exactly the pinned certificate.
		tlsCfg.InsecureSkipVerify = true
		tlsCfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("proxmox API sent no certificate")
			}
			got := sha256.Sum256(raw[0])
			if !bytes.Equal(got[:], want) {
				return fmt.Errorf("proxmox API certificate has SHA-256 fingerprint %X, the spec pins %X", got, want)
			}
			return nil
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &Client{base: u, node: node, auth: "PVEAPIToken=" + token,
		http: &http.Client{Transport: tr}, PollEvery: time.Second}, nil
}

// tokenRE is USER@REALM!TOKENID=SECRET, Proxmox VE's API token form.
var tokenRE = regexp.MustCompile(`^[^\s@!=]+@[^\s@!=]+![A-Za-z][A-Za-z0-9._-]*=[^\s]+$`)

func checkToken(token string) error {
	if !tokenRE.MatchString(token) {
		return errors.New("proxmox API token: want USER@REALM!TOKENID=SECRET (the token ID and its secret, as Proxmox VE shows them once)")
	}
	return nil
}

// ReadToken reads an API token from path, which must not be readable by
// group or others: the token acts as its user on the whole cluster.
func ReadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("proxmox token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("proxmox token file %s has mode %04o: it must be private to its owner (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("proxmox token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if err := checkToken(token); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return token, nil
}

// APIError is a request the API refused.
type APIError struct {
	Method, Path string
	Status       int
	Message      string
	// Params holds per-parameter messages (a 400 "Parameter verification failed").
	Params map[string]string
}

// Unwrap classifies the refusal by its status.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return errdefs.ErrInvalid
	case http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case http.StatusForbidden:
		return errdefs.ErrPermission
	case http.StatusNotImplemented:
		return errdefs.ErrInvalid
	case http.StatusServiceUnavailable:
		return errdefs.ErrUnavailable
	}
	return errdefs.ErrInternal
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "proxmox %s %s: %d %s", e.Method, e.Path, e.Status, strings.TrimSpace(e.Message))
	keys := make([]string, 0, len(e.Params))
	for k := range e.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "; %s: %s", k, strings.TrimSpace(e.Params[k]))
	}
	return b.String()
}

// envelope is every API answer: {"data": …}, with "errors" and "message"
// on a failure.
type envelope struct {
	Data    json.RawMessage   `json:"data"`
	Errors  map[string]string `json:"errors"`
	Message string            `json:"message"`
}

// do sends form (nil: none) and decodes the answer's data into out (nil:
// ignore it).
func (c *Client) do(ctx context.Context, method, path string, form url.Values, out any) error {
	var body io.Reader
	target := c.base.JoinPath(path)
	if form != nil {
		if method == http.MethodGet || method == http.MethodDelete {
			target.RawQuery = form.Encode()
		} else {
			body = strings.NewReader(form.Encode())
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, target.String(), body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return c.send(req, path, out)
}

func (c *Client) send(req *http.Request, path string, out any) error {
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("proxmox %s %s: %w", req.Method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("proxmox %s %s: %w", req.Method, path, err)
	}
	var env envelope
	jsonErr := json.Unmarshal(raw, &env)
	if resp.StatusCode != http.StatusOK {
		// pve-http-server's own refusals (501 chunked, …) carry the
		// message in the reason phrase and as a text body; a 401 has no
		// body. Either is the server's text: bounded before it is shown.
		msg := env.Message
		if msg == "" && jsonErr != nil {
			msg = string(raw[:min(len(raw), 512)])
		}
		msg = printable(msg[:min(len(msg), 2048)])
		if msg == "" {
			msg = strings.TrimPrefix(resp.Status, fmt.Sprint(resp.StatusCode)+" ")
		}
		return &APIError{Method: req.Method, Path: path, Status: resp.StatusCode, Message: msg, Params: env.Errors}
	}
	if jsonErr != nil {
		return fmt.Errorf("proxmox %s %s: answer is not JSON: %w", req.Method, path, jsonErr)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("proxmox %s %s: unexpected data: %w", req.Method, path, err)
	}
	return nil
}

// Version is GET /version.
type Version struct {
	Version string `json:"version"`
	Release string `json:"release"`
	RepoID  string `json:"repoid"`
}

// Version returns the API server's version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.do(ctx, http.MethodGet, "/version", nil, &v)
	return v, err
}

// AtLeast reports whether release ("8.4") is at least major.minor.
func (v Version) AtLeast(major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(v.Release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func (c *Client) nodePath(parts ...string) string {
	return "/nodes/" + url.PathEscape(c.node) + "/" + strings.Join(parts, "/")
}

// printable keeps the server's text to one line of printable characters.
func printable(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s))
}
