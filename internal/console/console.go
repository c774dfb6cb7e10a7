package console

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/dashboards"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// Hub is what the console reads and does at the hub, as one operator:
// *api.AdminClient dialled with the operator's certificate, or at the hub
// itself *hub.Caller (AtHub).
type Hub interface {
	ListNodes(ctx context.Context) (*api.ListNodesResponse, error)
	GetNode(ctx context.Context, name string) (*api.Node, error)
	Audit(ctx context.Context, from uint64, limit int) (*api.AuditResponse, error)
	// AssignBuild starts an upgrade (cluster.UpgradeNode calls it).
	AssignBuild(ctx context.Context, name string, manifest, signature []byte) (*api.Node, error)
}

// Config is what a console serves with.
type Config struct {
	Hub Hub
	// Cert is the operator certificate Hub was dialled with: the console
	// offers what its role allows, nothing more, and binds CSRF tokens to it.
	Cert *x509.Certificate
	// Cluster and HubAddr are shown on every page.
	Cluster, HubAddr string
	// Token lets a browser in (GET /login?token=…); empty: a random one,
	// see Console.Token.
	Token string
	// Poll is how often the live view asks the hub for its node list.
	Poll time.Duration
	Now  func() time.Time

	// Act revokes, fences or replaces a node as kubedos node
	// revoke|fence|replace do (cluster.Access.ActOnNode, with the spec
	// when the console has one); nil: those actions are not offered.
	Act func(ctx context.Context, act cluster.NodeAction) (cluster.NodeActed, error)
	// DialNode connects to a node's own API with the operator's
	// certificate (cluster.NodeDialer.Dial); nil: no services and no
	// upgrades are offered.
	DialNode func(name string) (*api.NodeClient, func(), error)
	// Runs reads the hub's convergence runs (*api.RunsClient); nil: the
	// plan is shown without its last run.
	Runs Runs
	// Spec is the cluster's spec, which the plan page expands (nil: no
	// plan).
	Spec *spec.ClusterSpec
	// Builds are build directories: the builds page shows them, the node
	// page their PCR predictions, and nodes may be upgraded to them.
	// ArtifactKey checks their manifests' signatures (nil: shown
	// unchecked; the hub checks an upgrade's build regardless).
	Builds      []string
	ArtifactKey ed25519.PublicKey
	// Upgrade tunes upgrades (Wait: DefaultUpgradeWait when 0); they
	// always reboot into the new build.
	Upgrade cluster.UpgradeOptions
	// Operators, set, make this a console many operators use, each as
	// themselves (the one the hub serves on the master, AtHub): Hub, Cert,
	// Token, Act and Runs are then unused, every session gets its own.
	Operators Operators
	// NodeAPINote says on the node page why DialNode is nil (shown when
	// set).
	NodeAPINote string
	// Prometheus is the base URL of the cluster's Prometheus (the
	// prometheus node's, http://ADDR:9090); set, the console serves the
	// dashboards (internal/dashboards) at /dashboards/ behind its login.
	// PrometheusClient carries its TLS (nil: http.DefaultClient).
	Prometheus       string
	PrometheusClient *http.Client
}

// DefaultPoll is how often the live overview polls the hub while a page
// watches it: a change at the hub reaches the page within about this.
const DefaultPoll = 500 * time.Millisecond

// Bounds on what the console shows of attacker-controlled text (a node
// sends the measurements its quarantine reason quotes) and takes from a
// form.
const (
	maxReason     = 16 << 10
	maxAuditField = 2048
	maxFormReason = 1024
	auditTail     = 500
)

const (
	cookieName = "kubedos_console"
	sessionTTL = 12 * time.Hour
)

//go:embed assets
var assets embed.FS

// Console serves the pages; make it with New.
type Console struct {
	cfg Config
	// self is the one operator of a console without Operators, read from
	// cfg.Cert.
	self  *Operator
	key   []byte // HMAC key of the CSRF tokens
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session // by id
	audit    []api.AuditEntry    // the newest auditTail entries seen, oldest first
	chainOK  bool
	chainAt  time.Time
	jobs     map[string]*Job // upgrades started here, by node
	roll     *RollJob        // the last roll of the cluster started here
	// bg is what upgrades run under: Run's context once it runs.
	bg context.Context

	builds []Build // read once at New: a build directory does not change
	live   *live
	// dash serves the dashboards; nil without Config.Prometheus.
	dash http.Handler
}

// New checks cfg and makes the console.
func New(cfg Config) (*Console, error) {
	var self *Operator
	if cfg.Operators == nil {
		if cfg.Hub == nil {
			return nil, fmt.Errorf("%w: console: no hub client", errdefs.ErrInvalid)
		}
		role, err := pki.RoleOf(cfg.Cert)
		if err != nil {
			return nil, fmt.Errorf("%w: console: operator certificate: %w", errdefs.ErrInvalid, err)
		}
		if role == pki.RoleNode {
			return nil, fmt.Errorf("%w: console: %q is a node certificate, not an operator's", errdefs.ErrInvalid, cfg.Cert.Subject.CommonName)
		}
		self = NewOperator(cfg.Cert, role, cfg.Hub)
		self.Act, self.Runs, self.Expires = cfg.Act, cfg.Runs, time.Time{}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Token == "" {
		cfg.Token = randomHex(16)
	}
	c := &Console{cfg: cfg, self: self, key: []byte(randomHex(32)), sessions: map[string]*session{}, pages: map[string]*template.Template{},
		jobs: map[string]*Job{}, bg: context.Background()}
	for _, dir := range cfg.Builds {
		c.builds = append(c.builds, LoadBuild(dir, cfg.ArtifactKey))
	}
	for _, p := range []string{"overview", "node", "audit", "login", "builds", "upgrades", "plan"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		c.pages[p] = t
	}
	c.live = newLive(c)
	if cfg.Prometheus != "" {
		src, err := dashboards.NewClient(cfg.Prometheus, cfg.PrometheusClient)
		if err != nil {
			return nil, fmt.Errorf("%w: console: %w", errdefs.ErrInvalid, err)
		}
		c.dash = http.StripPrefix("/dashboards", dashboards.New(src, dashboards.Options{Cluster: cfg.Cluster, Now: cfg.Now, Home: "/"}))
	}
	static, _ := fs.Sub(assets, "assets/static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", c.login)
	mux.HandleFunc("GET /{$}", c.auth(c.overview))
	mux.HandleFunc("GET /nodes/{name}", c.auth(c.node))
	mux.HandleFunc("POST /nodes/{name}/{action}", c.auth(c.act))
	mux.HandleFunc("GET /audit", c.auth(c.auditPage))
	mux.HandleFunc("GET /builds", c.auth(c.buildsPage))
	mux.HandleFunc("GET /upgrades", c.auth(c.upgradesPage))
	mux.HandleFunc("POST /roll", c.auth(c.rollAction))
	mux.HandleFunc("GET /plan", c.auth(c.planPage))
	mux.HandleFunc("GET /events", c.auth(c.live.serve))
	if c.dash != nil {
		// The pages set their own, stricter policy: no script at all.
		mux.HandleFunc("GET /dashboards/", c.auth(c.dash.ServeHTTP))
	}
	c.mux = mux
	return c, nil
}

// Token is the login token: open /login?token=TOKEN once per browser
// (none at the hub: each operator gets a login link of their own).
func (c *Console) Token() string { return c.cfg.Token }

// Run polls the hub for the live views until ctx ends; upgrades started
// from then on end with it.
func (c *Console) Run(ctx context.Context) {
	c.mu.Lock()
	c.bg = ctx
	c.mu.Unlock()
	c.live.run(ctx)
}

// Refresh polls the hub once and pushes a changed overview to live pages
// (at the hub, as one of the operators watching; none: nothing to do).
func (c *Console) Refresh(ctx context.Context) error {
	h := c.live.anyHub()
	if c.self != nil {
		h = c.self.Hub
	}
	if h == nil {
		return nil
	}
	return c.live.refresh(ctx, h)
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything is served from here: no CDN, no inline script, no framing.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

type ctxKey struct{}

// page is what every template gets.
type page struct {
	Title, Cluster, HubAddr, Operator string
	Role                              pki.Role
	CSRF                              string
	Error                             string
	Data                              any
	// Dashboards: the nav links to /dashboards/.
	Dashboards bool
	// AtHub: the console the hub serves (login by certificate or link).
	AtHub bool
}

// who is the session of an authenticated request.
func who(r *http.Request) *session {
	s, _ := r.Context().Value(ctxKey{}).(*session)
	return s
}

// op is the operator an authenticated request acts as.
func op(r *http.Request) *Operator { return who(r).op }

func (c *Console) base(r *http.Request, title string) page {
	p := page{Title: title, Cluster: c.cfg.Cluster, HubAddr: c.cfg.HubAddr, Dashboards: c.dash != nil, AtHub: c.cfg.Operators != nil}
	if s := who(r); s != nil {
		p.Operator, p.Role, p.CSRF = s.op.Name, s.op.Role, c.csrf(s)
	}
	return p
}

func (c *Console) render(w http.ResponseWriter, name string, p page, data any) {
	p.Data = data
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := c.pages[name].ExecuteTemplate(w, "layout", p); err != nil {
		// Headers are gone; the page ends where it failed.
		fmt.Fprintf(w, "<p class=error>render: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

// hubError shows a hub failure with the status it maps to.
func (c *Console) hubError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	err = errdefs.FromGRPC(err)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errdefs.ErrPermission), errors.Is(err, errdefs.ErrUnauthenticated):
		status = http.StatusForbidden
	case errors.Is(err, errdefs.ErrInvalid), errors.Is(err, errdefs.ErrPrecondition):
		status = http.StatusConflict
	}
	w.WriteHeader(status)
	p := c.base(r, "Error")
	p.Error = clip(err.Error(), maxAuditField)
	c.render(w, "overview", p, nil)
}

// States in the order the overview shows them.
var states = []api.NodeState{api.NodeEnrolled, api.NodePending, api.NodeQuarantined, api.NodeRevoked, api.NodeFenced, api.NodeReplaced}

// RoleCount is one role's nodes by state.
type RoleCount struct {
	Role   string
	Total  int
	States []int // by states
}

// Overview is the overview page's data (and the live fragment's).
type Overview struct {
	States  []api.NodeState
	Roles   []RoleCount
	Totals  []int
	Total   int
	Nodes   []api.Node // all of them, by name
	Updated time.Time
	// Page is the part of Nodes the table shows.
	Page Page
}

// Page is one page of the node table: the nodes whose name contains
// Filter, PageSize of them from the Index-th page.
type Page struct {
	Nodes               []api.Node
	Index, Pages, Shown int
	Filter              string
	Prev, Next          string // links, empty at the ends
}

// PageSize bounds the node table: the counts cover every node, the table
// a page of them, so a big cluster's overview stays quick to render.
const PageSize = 500

func summarize(nodes []api.Node, now time.Time) Overview {
	o := Overview{States: states, Totals: make([]int, len(states)), Total: len(nodes), Nodes: nodes, Updated: now}
	idx := map[api.NodeState]int{}
	for i, s := range states {
		idx[s] = i
	}
	byRole := map[string]*RoleCount{}
	for _, n := range nodes {
		rc := byRole[n.Role]
		if rc == nil {
			rc = &RoleCount{Role: n.Role, States: make([]int, len(states))}
			byRole[n.Role] = rc
		}
		rc.Total++
		if i, ok := idx[n.State]; ok {
			rc.States[i]++
			o.Totals[i]++
		}
	}
	for _, rc := range byRole {
		o.Roles = append(o.Roles, *rc)
	}
	sort.Slice(o.Roles, func(i, j int) bool { return o.Roles[i].Role < o.Roles[j].Role })
	sort.SliceStable(o.Nodes, func(i, j int) bool { return o.Nodes[i].Name < o.Nodes[j].Name })
	return o
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	res, err := op(r).Hub.ListNodes(r.Context())
	if err != nil {
		c.hubError(w, r, err)
		return
	}
	o := summarize(res.Nodes, c.cfg.Now())
	q := r.URL.Query()
	idx, _ := strconv.Atoi(q.Get("page"))
	o.Page = paginate(o.Nodes, clip(q.Get("q"), 200), idx)
	c.render(w, "overview", c.base(r, "Overview"), o)
}

func paginate(nodes []api.Node, filter string, idx int) Page {
	p := Page{Filter: filter}
	match := nodes
	if filter != "" {
		match = nil
		for _, n := range nodes {
			if strings.Contains(n.Name, filter) {
				match = append(match, n)
			}
		}
	}
	p.Shown = len(match)
	p.Pages = max(1, (len(match)+PageSize-1)/PageSize)
	p.Index = min(max(idx, 0), p.Pages-1)
	p.Nodes = match[p.Index*PageSize : min(len(match), (p.Index+1)*PageSize)]
	link := func(i int) string {
		v := url.Values{"page": {strconv.Itoa(i)}}
		if filter != "" {
			v.Set("q", filter)
		}
		return "/?" + v.Encode()
	}
	if p.Index > 0 {
		p.Prev = link(p.Index - 1)
	}
	if p.Index < p.Pages-1 {
		p.Next = link(p.Index + 1)
	}
	return p
}

// AuditView is the audit page's data.
type AuditView struct {
	Entries []api.AuditEntry // newest first
	ChainOK bool
	At      time.Time
	Filter  string
}

// auditPage reads the log from where the console last stopped (it is
// append-only) and shows the newest entries first, filtered by substring.
func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	if err := c.readAudit(r.Context(), op(r).Hub); err != nil {
		c.hubError(w, r, err)
		return
	}
	filter := clip(r.URL.Query().Get("q"), 200)
	c.mu.Lock()
	v := AuditView{ChainOK: c.chainOK, At: c.chainAt, Filter: filter}
	for i := len(c.audit) - 1; i >= 0; i-- {
		e := c.audit[i]
		if filter != "" && !strings.Contains(strings.Join([]string{e.Actor, e.Action, e.Target, e.Outcome, e.Detail}, "\x00"), filter) {
			continue
		}
		v.Entries = append(v.Entries, e)
	}
	c.mu.Unlock()
	c.render(w, "audit", c.base(r, "Audit log"), v)
}

// readAudit reads the log as the operator of h: every role may read it,
// so the tail is shared.
func (c *Console) readAudit(ctx context.Context, h Hub) error {
	c.mu.Lock()
	from := uint64(1)
	if n := len(c.audit); n > 0 {
		from = c.audit[n-1].Seq + 1
	}
	c.mu.Unlock()
	const page = 1000 // the hub's MaxAuditPage
	for {
		res, err := h.Audit(ctx, from, page)
		if err != nil {
			return err
		}
		c.mu.Lock()
		// The hub verifies the whole chain on every read; the last word counts.
		c.chainOK, c.chainAt = res.ChainOK, c.cfg.Now()
		for _, e := range res.Entries {
			if e.Seq < from {
				continue
			}
			e.Actor, e.Action, e.Target, e.Outcome, e.Detail = clip(e.Actor, maxAuditField), clip(e.Action, maxAuditField),
				clip(e.Target, maxAuditField), clip(e.Outcome, maxAuditField), clip(e.Detail, maxAuditField)
			c.audit = append(c.audit, e)
			from = e.Seq + 1
		}
		if over := len(c.audit) - auditTail; over > 0 {
			c.audit = append([]api.AuditEntry(nil), c.audit[over:]...)
		}
		c.mu.Unlock()
		if len(res.Entries) < page {
			return nil
		}
	}
}

// clip bounds s to max bytes of valid UTF-8, saying how long it was.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes in all)", strings.ToValidUTF8(s[:max], ""), len(s))
}
