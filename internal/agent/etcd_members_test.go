package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdGateway is the local member's JSON gateway as the membership
// methods use it: the member list (with the answering member's ID in its
// header) and remove, over mutual TLS with the etcd CA.
type etcdGateway struct {
	mu      sync.Mutex
	self    string
	members []etcdListed
	removed []string
	// raw, when set, is the member list's whole answer (a hostile etcd).
	raw string
}

func newEtcdGateway(t *testing.T, ca *pki.CA) (*etcdGateway, string) {
	t.Helper()
	g := &etcdGateway{self: "12", members: []etcdListed{
		{"11", "cp-1", []string{"https://10.50.0.11:2380"}, []string{"https://10.50.0.11:2379"}, false},
		{"12", "cp-2", []string{"https://10.50.0.12:2380"}, []string{"https://10.50.0.12:2379"}, false},
		{"13", "cp-3", []string{"https://10.50.0.13:2380"}, []string{"https://10.50.0.13:2379"}, false},
		{"14", "cp-old", []string{"https://10.50.0.14:2380"}, []string{"https://10.50.0.14:2379"}, false},
		{"15", "", []string{"https://10.50.0.15:2380"}, nil, true},
	}}
	srv := mtlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v3/cluster/member/list":
			if g.raw != "" {
				io.WriteString(w, g.raw)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"header": map[string]string{"member_id": g.self}, "members": g.members})
		case "/v3/cluster/member/remove":
			var req struct{ ID string }
			_ = json.Unmarshal(body, &req)
			g.removed = append(g.removed, req.ID)
			g.members = slices.DeleteFunc(g.members, func(m etcdListed) bool { return m.ID == req.ID })
			_ = json.NewEncoder(w).Encode(map[string]any{"members": g.members})
		default:
			http.NotFound(w, r)
		}
	}))
	return g, srv.URL
}

func (g *etcdGateway) removals() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.removed)
}

func (g *etcdGateway) answer(raw string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.raw = raw
}

// etcdMemberRunner is cp-2 of local-ha with its etcd certificates, its
// local member at the gateway.
func etcdMemberRunner(t *testing.T) (*kubeRunner, *etcdGateway) {
	t.Helper()
	ca := newTestCA(t, "etcd CA")
	k, _, _ := etcdJoinRunner(t, ca, nil, nil)
	g, url := newEtcdGateway(t, ca)
	k.etcdLocal = url
	return k, g
}

// The node lists its etcd cluster through its own member and removes a
// member by ID and name; it refuses its own member, a name that is not
// the listed one, an ID etcd does not list or that is not an ID, and
// every answer of etcd's that is not what a member list must be.
func TestEtcdMembership(t *testing.T) {
	ctx := context.Background()
	k, g := etcdMemberRunner(t)

	got, err := k.EtcdMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "cp-2" || got.Self != "12" || len(got.Members) != 5 {
		t.Fatalf("members: %+v", got)
	}
	if m := got.Members[4]; m.ID != "15" || m.Name != "" || !m.Learner || len(m.ClientURLs) != 0 {
		t.Errorf("a learner not started: %+v", m)
	}
	if m := got.Members[3]; m.Name != "cp-old" || m.ClientURLs[0] != "https://10.50.0.14:2379" {
		t.Errorf("cp-old: %+v", m)
	}

	for _, tt := range []struct{ id, name, want string }{
		{"12", "cp-2", "is cp-2's own"},
		{"14", "cp-1", `named "cp-old", not "cp-1"`},
		{"99", "cp-9", "lists no member 99"},
		{"014", "cp-old", "not a member ID"},
		{"0", "", "not a member ID"},
		{"14", "CP OLD\n", "not a DNS label"},
	} {
		if _, err := k.EtcdRemoveMember(ctx, tt.id, tt.name); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("remove %s %q: %v, want it refused (%s)", tt.id, tt.name, err, tt.want)
		}
	}
	if r := g.removals(); len(r) != 0 {
		t.Fatalf("refused removals reached etcd: %v", r)
	}

	left, err := k.EtcdRemoveMember(ctx, "14", "cp-old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.EtcdRemoveMember(ctx, "15", ""); err != nil {
		t.Fatal(err)
	}
	if r := g.removals(); !slices.Equal(r, []string{"14", "15"}) {
		t.Errorf("removed %v", r)
	}
	if len(left.Members) != 4 || slices.ContainsFunc(left.Members, func(m api.EtcdMember) bool { return m.ID == "14" }) {
		t.Errorf("left after removing cp-old: %+v", left.Members)
	}

	ok := func(members string) string { return `{"header":{"member_id":"11"},"members":[` + members + `]}` }
	cp1 := `{"ID":"11","name":"cp-1","peerURLs":["https://10.50.0.11:2380"]}`
	for raw, want := range map[string]string{
		ok(cp1 + `,{"ID":"12","name":"cp-2\u001b[31m","peerURLs":["https://10.50.0.12:2380"]}`): "not a DNS label",
		ok(cp1 + `,{"ID":"12","name":"cp-2","peerURLs":["http://10.50.0.12:2380"]}`):            "not https://address:port",
		ok(cp1 + `,{"ID":"12","name":"cp-2","peerURLs":["https://etcd.example:2380"]}`):         "not https://address:port",
		ok(cp1 + `,{"ID":"12","name":"cp-2","peerURLs":["https://[fe80::1%eth0]:2380"]}`):       "not https://address:port",
		ok(cp1 + `,{"ID":"12","name":"cp-2","peerURLs":[]}`):                                    "0 peer and 0 client URLs",
		ok(cp1 + `,{"ID":"x12","name":"cp-2","peerURLs":["https://10.50.0.12:2380"]}`):          `member ID "x12"`,
		ok(cp1 + "," + cp1):                   "member 11 twice",
		ok(""):                                "0 members",
		ok(strings.Repeat(cp1+",", 64) + cp1): "65 members",
		`{"header":{"member_id":"99"},"members":[` + cp1 + `]}`: `the answering member "99" is not among the members`,
		`not json`: "invalid character",
	} {
		g.answer(raw)
		if _, err := k.EtcdMembers(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("etcd answered %.80s…: %v, want %q", raw, err, want)
		}
	}
}

// A node without an etcd member answers NotFound.
func TestEtcdMembershipNoEtcd(t *testing.T) {
	k, _, _ := newTestRunner(t, nil)
	if _, err := k.EtcdMembers(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Errorf("no plan: %v, want ErrNotFound", err)
	}
	e := newNodeEnv(t)
	if _, err := e.as("ada", pki.RoleAdmin).EtcdMembers(context.Background()); status.Code(err) != codes.NotFound {
		t.Errorf("worker: %v, want NotFound", err)
	}
}

// Through the node API: readers and operators list the members, only an
// admin removes one; a refused removal never reaches etcd, and every
// call is audited with the member it named.
func TestEtcdMembershipRoles(t *testing.T) {
	ctx := context.Background()
	k, g := etcdMemberRunner(t)
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.Etcd = k })
	for _, role := range []pki.Role{pki.RoleReader, pki.RoleOperator, pki.RoleAdmin} {
		c := e.as(string(role)+"-1", role)
		if got, err := c.EtcdMembers(ctx); err != nil || len(got.Members) != 5 {
			t.Errorf("%s listing: %v %+v", role, err, got)
		}
		if role == pki.RoleAdmin {
			continue
		}
		if _, err := c.EtcdRemoveMember(ctx, "14", "cp-old"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s removing: %v, want PermissionDenied", role, err)
		}
	}
	if r := g.removals(); len(r) != 0 {
		t.Fatalf("a refused caller's removal reached etcd: %v", r)
	}
	admin := e.as("ada", pki.RoleAdmin)
	if _, err := admin.EtcdRemoveMember(ctx, "12", "cp-2"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("removing the node's own member: %v, want FailedPrecondition", err)
	}
	if _, err := admin.EtcdRemoveMember(ctx, "14", "cp-old"); err != nil {
		t.Fatal(err)
	}
	if r := g.removals(); !slices.Equal(r, []string{"14"}) {
		t.Errorf("removed %v", r)
	}
	target := fmt.Sprintf("etcd member %q (%q)", "cp-old", "14")
	audited := func(actor, outcome string) bool {
		return slices.ContainsFunc(e.auditLog(), func(r AuditRecord) bool {
			return r.Actor == actor && r.Method == "EtcdRemoveMember" && r.Target == target && r.Outcome == outcome
		})
	}
	if !audited("reader-1 (reader)", "denied") || !audited("operator-1 (operator)", "denied") || !audited("ada (admin)", "ok") {
		t.Errorf("removals not audited as denied, denied, ok: %+v", e.auditLog())
	}
}
