package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestNodeAPIAuthentication: a caller needs a certificate from the cluster
// CA, not revoked, with an operator role; nodes are not callers.
func TestNodeAPIAuthentication(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()

	if _, err := e.client(nil).Version(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no client certificate: %v, want Unauthenticated", err)
	}
	other := newTestCA(t, "another CA")
	if _, err := e.client(clientCert(t, other, "mallory", pki.RoleAdmin)).Version(ctx); err == nil {
		t.Error("a certificate from another CA was accepted")
	}

	revoked := clientCert(t, e.ca, "eve", pki.RoleAdmin)
	eve := e.client(revoked)
	if _, err := eve.Version(ctx); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := e.revs.Update([]string{pki.SerialString(revoked.Leaf.SerialNumber)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The same connection: revocation is checked on every call.
	if _, err := eve.Version(ctx); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked certificate: %v, want Unauthenticated naming the revocation", err)
	}
	if _, err := e.client(revoked).Reboot(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked certificate on a new connection: %v, want Unauthenticated", err)
	}

	// Another node's certificate (client auth, same CA) is not a caller.
	nodeDir := t.TempDir()
	writeNodeIdentity(t, e.ca, nodeDir, "w-2")
	pair, err := tls.LoadX509KeyPair(filepath.Join(nodeDir, NodeCertFile), filepath.Join(nodeDir, NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client(&pair).Version(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node certificate: %v, want PermissionDenied", err)
	}

	log := e.auditLog()
	if !slices.ContainsFunc(log, func(r AuditRecord) bool {
		return r.Actor == "anonymous" && r.Outcome == "unauthenticated" && r.Method == "Version"
	}) {
		t.Errorf("no audit record of the anonymous call: %+v", log)
	}
	if !slices.ContainsFunc(log, func(r AuditRecord) bool {
		return r.Actor == "eve (unverified)" && r.Outcome == "unauthenticated" && strings.Contains(r.Detail, "revoked")
	}) {
		t.Errorf("no audit record of the revoked call: %+v", log)
	}
}

// TestNodeAPIRoles: readers read, operators restart services and apply
// configuration, admins reboot and shut down.
func TestNodeAPIRoles(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	clients := map[pki.Role]*api.NodeClient{
		pki.RoleReader:   e.as("rita", pki.RoleReader),
		pki.RoleOperator: e.as("olga", pki.RoleOperator),
		pki.RoleAdmin:    e.as("ada", pki.RoleAdmin),
	}
	doc := `{"apiVersion":"kubedos.io/v1alpha1","kind":"NodeConfig","hostname":"w-1"}`
	calls := []struct {
		name string
		call func(*api.NodeClient) error
		min  pki.Role
	}{
		{"Version", func(c *api.NodeClient) error { _, err := c.Version(ctx); return err }, pki.RoleReader},
		{"Health", func(c *api.NodeClient) error { _, err := c.Health(ctx); return err }, pki.RoleReader},
		{"Services", func(c *api.NodeClient) error { _, err := c.Services(ctx); return err }, pki.RoleReader},
		{"Logs", func(c *api.NodeClient) error { _, err := c.Logs(ctx, &api.LogsRequest{}); return err }, pki.RoleReader},
		{"Dmesg", func(c *api.NodeClient) error { _, err := c.Dmesg(ctx, 0); return err }, pki.RoleReader},
		{"ConfigGet", func(c *api.NodeClient) error { _, err := c.ConfigGet(ctx); return err }, pki.RoleReader},
		{"Drift", func(c *api.NodeClient) error { _, err := c.Drift(ctx); return err }, pki.RoleReader},
		{"RestartService", func(c *api.NodeClient) error { _, err := c.RestartService(ctx, "chrony"); return err }, pki.RoleOperator},
		{"ConfigApply", func(c *api.NodeClient) error { _, err := c.ConfigApply(ctx, doc, true); return err }, pki.RoleOperator},
		{"Shutdown", func(c *api.NodeClient) error { _, err := c.Shutdown(ctx); return err }, pki.RoleAdmin},
	}
	level := map[pki.Role]int{pki.RoleReader: 1, pki.RoleOperator: 2, pki.RoleAdmin: 3}
	for _, tt := range calls {
		for _, role := range []pki.Role{pki.RoleReader, pki.RoleOperator, pki.RoleAdmin} {
			err := tt.call(clients[role])
			if allowed := level[role] >= level[tt.min]; allowed && err != nil {
				t.Errorf("%s as %s: %v, want allowed", tt.name, role, err)
			} else if !allowed && status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s as %s: %v, want PermissionDenied", tt.name, role, err)
			}
		}
	}
	// The acceptance case: a reader calling reboot is refused,
	// and the refusal is audited.
	if _, err := clients[pki.RoleReader].Reboot(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader rebooting: %v, want PermissionDenied", err)
	}
	if !slices.ContainsFunc(e.auditLog(), func(r AuditRecord) bool {
		return r.Actor == "rita (reader)" && r.Method == "Reboot" && r.Outcome == "denied" && r.Serial != ""
	}) {
		t.Errorf("reader's reboot not audited as denied: %+v", e.auditLog())
	}
	if got := e.sys.restarts(); !slices.Equal(got, []string{"chrony.service", "chrony.service"}) {
		t.Errorf("restarted %v, want chrony.service by operator and admin", got)
	}
}

// TestEveryMethodHasARole: no method of the service escapes authorization.
func TestEveryMethodHasARole(t *testing.T) {
	s := grpc.NewServer()
	api.RegisterNode(s, nodeService{})
	info := s.GetServiceInfo()[api.NodeService]
	var served []string
	for _, m := range info.Methods {
		served = append(served, m.Name)
	}
	slices.Sort(served)
	listed := slices.Sorted(slices.Values(api.NodeMethods))
	if !slices.Equal(served, listed) {
		t.Errorf("served methods %v, api.NodeMethods %v", served, listed)
	}
	for _, m := range served {
		if _, ok := nodeAPIActions[m]; !ok {
			t.Errorf("method %s has no action in nodeAPIActions", m)
		}
	}
}

// TestPowerAnswersFirst: reboot answers, then acts after the delay; a
// second request while one is pending gets the same answer.
func TestPowerAnswersFirst(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	admin := e.as("ada", pki.RoleAdmin)
	start := time.Now()
	p, err := admin.Reboot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Action != "reboot" || p.At.Before(start) {
		t.Errorf("answer %+v", p)
	}
	select {
	case a := <-e.sys.powered:
		t.Fatalf("%s before the answer's delay", a)
	default:
	}
	again, err := admin.Reboot(ctx)
	if err != nil || !again.At.Equal(p.At) {
		t.Errorf("second reboot: %+v, %v; want the pending one", again, err)
	}
	if _, err := admin.Shutdown(ctx); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("shutdown while a reboot is pending: %v, want FailedPrecondition", err)
	}
	select {
	case a := <-e.sys.powered:
		if a != "reboot" || time.Since(start) < 300*time.Millisecond {
			t.Errorf("%s after %s", a, time.Since(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot")
	}
}

func TestRestartService(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	op := e.as("olga", pki.RoleOperator)
	u, err := op.RestartService(ctx, "chrony.service")
	if err != nil || u.Name != "chrony.service" || u.Active != "active" {
		t.Fatalf("restart chrony: %+v, %v", u, err)
	}
	tests := []struct {
		name string
		code codes.Code
	}{
		{"nope", codes.PermissionDenied},
		{"kubelet", codes.NotFound},
		{"../../etc/passwd", codes.InvalidArgument},
		{"a/b.service", codes.InvalidArgument},
		{"-H", codes.InvalidArgument},
		{"", codes.InvalidArgument},
		{"sshd.socket", codes.InvalidArgument},
		{"multi-user.target", codes.InvalidArgument},
		{"getty@.service", codes.InvalidArgument},
		{"chrony;reboot", codes.InvalidArgument},
		{strings.Repeat("a", 300), codes.InvalidArgument},
		{"kubedosd", codes.FailedPrecondition},
	}
	for _, tt := range tests {
		if _, err := op.RestartService(ctx, tt.name); status.Code(err) != tt.code {
			t.Errorf("restart %q: %v, want %s", tt.name, err, tt.code)
		}
	}
	if got := e.sys.restarts(); !slices.Equal(got, []string{"chrony.service"}) {
		t.Errorf("restarted %v, want only chrony.service", got)
	}
}

func TestServiceName(t *testing.T) {
	for in, want := range map[string]string{
		"chrony":                         "chrony.service",
		"chrony.service":                 "chrony.service",
		"getty@tty1.service":             "getty@tty1.service",
		"systemd-fsck@dev-vda\\x2d1":     "systemd-fsck@dev-vda\\x2d1.service",
		"systemd-networkd-wait-online":   "systemd-networkd-wait-online.service",
		"dbus-org.freedesktop.network1":  "dbus-org.freedesktop.network1.service",
		"user-runtime-dir@1000.service":  "user-runtime-dir@1000.service",
		"kubedos-node.example.com":       "kubedos-node.example.com.service",
		"a:b_c":                          "a:b_c.service",
		"systemd-journald.service":       "systemd-journald.service",
		"x.service.service":              "x.service.service",
		"emergency":                      "emergency.service",
		"NetworkManager":                 "NetworkManager.service",
		"ifup@eth0":                      "ifup@eth0.service",
		"lvm2-pvscan@8:2":                "lvm2-pvscan@8:2.service",
		"serial-getty@ttyS0":             "serial-getty@ttyS0.service",
		"systemd-backlight@backlight:x1": "systemd-backlight@backlight:x1.service",
	} {
		got, err := serviceName(in)
		if err != nil || got != want {
			t.Errorf("serviceName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestLogsBounded(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.sys.with(func() {
		for i := range 20 {
			e.sys.journal = append(e.sys.journal, api.LogEntry{Time: time.Unix(int64(i), 0).UTC(), Unit: "chrony.service", Message: "m" + string(rune('a'+i))})
		}
	})
	r := e.as("rita", pki.RoleReader)
	logs, err := r.Logs(ctx, &api.LogsRequest{Unit: "chrony.service", Lines: 5, Since: time.Unix(3, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.Entries) != 5 || logs.Entries[4].Message != "mt" || logs.Lines != 5 {
		t.Errorf("logs %+v: want the last 5 entries", logs)
	}
	if _, err := r.Logs(ctx, &api.LogsRequest{Lines: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Logs(ctx, &api.LogsRequest{}); err != nil {
		t.Fatal(err)
	}
	q := e.sys.journalQueries()
	if len(q) != 3 || q[0].Lines != 5 || q[0].Unit != "chrony.service" || !q[0].Since.Equal(time.Unix(3, 0)) ||
		q[1].Lines != api.MaxLogLines || q[2].Lines != api.DefaultLogLines {
		t.Errorf("journal queries %+v: want 5, the maximum and the default", q)
	}
	for _, bad := range []*api.LogsRequest{{Lines: -1}, {Unit: "../x"}, {Unit: "--boot"}} {
		if _, err := r.Logs(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Logs(%+v): %v, want InvalidArgument", bad, err)
		}
	}

	// Messages past MaxLogsBytes in total: the oldest are left out.
	big := strings.Repeat("x", api.MaxLogMessageBytes)
	e.sys.with(func() {
		e.sys.journal = nil
		for range api.MaxLogLines {
			e.sys.journal = append(e.sys.journal, api.LogEntry{Message: big})
		}
	})
	logs, err = r.Logs(ctx, &api.LogsRequest{Lines: api.MaxLogLines})
	if err != nil {
		t.Fatal(err)
	}
	if logs.Omitted == 0 || logs.Omitted+len(logs.Entries) != api.MaxLogLines {
		t.Errorf("%d entries, %d omitted: want the newest that fit in %d bytes", len(logs.Entries), logs.Omitted, api.MaxLogsBytes)
	}
}

func TestFollow(t *testing.T) {
	e := newNodeEnv(t)
	e.sys.with(func() { e.sys.journal = []api.LogEntry{{Message: "one"}, {Message: "two"}} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	err := e.as("rita", pki.RoleReader).Follow(ctx, &api.LogsRequest{Unit: "kubedosd"}, func(le *api.LogEntry) error {
		got = append(got, le.Message)
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("follow: %v, %v", got, err)
	}
	if _, err := e.client(nil).Logs(ctx, &api.LogsRequest{}); err == nil {
		t.Fatal("anonymous")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	err = e.client(nil).Follow(ctx2, &api.LogsRequest{}, func(*api.LogEntry) error { return nil })
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous follow: %v, want Unauthenticated", err)
	}
	// Audited when it starts and when it ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var outcomes []string
		for _, r := range e.auditLog() {
			if r.Method == "Follow" && r.Actor == "rita (reader)" {
				outcomes = append(outcomes, r.Outcome)
			}
		}
		if len(outcomes) == 2 {
			if outcomes[0] != "started" {
				t.Errorf("follow audit outcomes %v", outcomes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow audit outcomes %v, want started then the end", outcomes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDmesg(t *testing.T) {
	e := newNodeEnv(t)
	e.sys.with(func() {
		for i := range 10 {
			e.sys.kernel = append(e.sys.kernel, api.KernelMessage{Seconds: float64(i), Message: "k"})
		}
	})
	d, err := e.as("rita", pki.RoleReader).Dmesg(context.Background(), 3)
	if err != nil || len(d.Messages) != 3 || d.Messages[0].Seconds != 7 {
		t.Fatalf("dmesg: %+v, %v", d, err)
	}
}

func TestHealth(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	r := e.as("rita", pki.RoleReader)
	h, err := r.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Healthy || h.SystemState != "running" {
		t.Errorf("healthy node reported %+v", h)
	}
	check := func(h *api.Health, name string) api.HealthCheck {
		for _, c := range h.Checks {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no check %q in %+v", name, h.Checks)
		return api.HealthCheck{}
	}
	for _, name := range []string{"enrolled", "certificate", "tpm", "systemd", "failed-units"} {
		if c := check(h, name); !c.OK || !c.Critical {
			t.Errorf("check %+v", c)
		}
	}
	if c := check(h, "revocations"); !c.OK || !c.Critical {
		t.Errorf("revocations fetched: %+v, want a passing critical check", c)
	}
	// A running systemd has no failed unit: the list is not asked for.
	e.sys.with(func() {
		if e.sys.listed != 0 {
			t.Errorf("failed units listed %d times while systemd is running", e.sys.listed)
		}
	})
	e.sys.with(func() { e.sys.state, e.sys.failed = "degraded", []string{"chrony.service"} })
	if err := e.revs.Update(nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	h, err = r.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Healthy || h.SystemState != "degraded" || !slices.Equal(h.FailedUnits, []string{"chrony.service"}) ||
		check(h, "systemd").OK || check(h, "failed-units").OK || !check(h, "revocations").OK {
		t.Errorf("degraded node reported %+v", h)
	}
}

// TestCertificateReload: a renewed certificate is served from the next
// handshake on, without restarting the API.
func TestCertificateReload(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	cert := clientCert(t, e.ca, "rita", pki.RoleReader)
	serverSerial := func() string {
		var serial string
		cc := e.dial(cert, func(cs tls.ConnectionState) error {
			serial = pki.SerialString(cs.PeerCertificates[0].SerialNumber)
			return nil
		})
		if _, err := api.NewNodeClient(cc).Version(ctx); err != nil {
			t.Fatal(err)
		}
		return serial
	}
	if got := serverSerial(); got != pki.SerialString(e.nodeCert.SerialNumber) {
		t.Fatalf("served serial %s, want the enrollment certificate's", got)
	}
	time.Sleep(10 * time.Millisecond) // a new modification time
	renewed := writeNodeIdentity(t, e.ca, e.idDir, "w-1")
	if got := serverSerial(); got != pki.SerialString(renewed.SerialNumber) {
		t.Fatalf("served serial %s after renewal, want %s", got, pki.SerialString(renewed.SerialNumber))
	}
	// Between renewal's two writes the files do not match: the last good
	// pair is served.
	if err := os.WriteFile(filepath.Join(e.idDir, NodeCertFile), pemCert(e.nodeCert), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := serverSerial(); got != pki.SerialString(renewed.SerialNumber) {
		t.Fatalf("served serial %s with mismatched files, want the last good %s", got, pki.SerialString(renewed.SerialNumber))
	}
}

// TestErrorClasses: the agent's sentinels are of the errdefs classes that
// give clients the codes they always had.
func TestErrorClasses(t *testing.T) {
	for err, want := range map[error]codes.Code{
		ErrInvalid:                codes.InvalidArgument,
		&ConfigError{Source: "x"}: codes.InvalidArgument,
		&ConfigError{Source: "x", Problems: []ConfigProblem{{Refused: true}}}: codes.PermissionDenied,
		fmt.Errorf("x: %w", ErrNotFound):                                      codes.NotFound,
		ErrRefused:                                                            codes.FailedPrecondition,
		ErrPolicy:                                                             codes.PermissionDenied,
		context.DeadlineExceeded:                                              codes.DeadlineExceeded,
		errors.New("disk on fire"):                                            codes.Internal,
		status.Error(codes.Aborted, "kept"):                                   codes.Aborted,
	} {
		if got := status.Code(errdefs.ToGRPC(err)); got != want {
			t.Errorf("ToGRPC(%v) = %s, want %s", err, got, want)
		}
	}
}
