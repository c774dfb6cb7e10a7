//go:build integration

package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/pki"
)

// Integration: go test -tags integration -race -run SWTPM ./internal/hub
// (root: swtpm_setup signs EK certificates with swtpm's local CA under
// /var/lib/swtpm-localca).

const (
	itNodes   = 8
	itRole    = "worker"
	itBuild   = "build-worker-1"
	itTimeout = 4 * time.Minute
)

// itPolicy is the spec and signed manifest of the test: nodes tpm-0… of role
// worker must run itBuild, whose prediction is the recorded boot's.
type itPolicy struct{ pred measure.Prediction }

func (p itPolicy) Expected(name, role string) (string, measure.Prediction, error) {
	if !strings.HasPrefix(name, "tpm-") || role != itRole {
		return "", measure.Prediction{}, fmt.Errorf("the spec has no node %s with role %s", name, role)
	}
	return itBuild, p.pred, nil
}

// itHub is the hub process: a Store on disk, a Hub and its gRPC server on a
// fixed loopback address, stopped and started on the same state.
type itHub struct {
	t      *testing.T
	path   string
	ca     *pki.CA
	ver    AttestVerifier
	policy itPolicy
	addr   string

	store  *Store
	hub    *Hub
	cancel context.CancelFunc
	served chan error
}

const itSessionTTL = time.Minute

func (h *itHub) start() {
	h.t.Helper()
	st, err := Open(h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	hb, err := New(Options{Store: st, CA: h.ca, Verifier: h.ver, Policy: h.policy, CertLifetime: time.Hour,
		SessionTTL: itSessionTTL, NonceTTL: 30 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	srv, err := NewServer(hb, h.ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	addr := h.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.store, h.hub, h.cancel, h.served = st, hb, cancel, make(chan error, 1)
	go func() { h.served <- srv.Serve(ctx, lis) }()
}

// stop stops serving (in-flight calls finish) and closes the store.
func (h *itHub) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.served:
		if err != nil {
			h.t.Errorf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("the hub did not stop within 30 s")
	}
	if err := h.store.Close(); err != nil {
		h.t.Error(err)
	}
}

// dial connects to the hub over TLS, checking its certificate against the
// cluster CA; cert, when given, is the client certificate.
func (h *itHub) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conf := &tls.Config{RootCAs: h.ca.Pool(), ServerName: api.HubServerName, MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	cc, err := grpc.NewClient(h.addr, append(api.DialOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(conf)),
		// Quick reconnects after the restart, but a whole TLS handshake's
		// time to connect: an unset MinConnectTimeout makes the backoff
		// delay (50 ms) the connect deadline, which a loaded machine under
		// -race misses (CI failed so).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 20 * time.Second}),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// itNode is a machine with an swtpm whose PCRs hold the predicted boot.
type itNode struct {
	name   string
	node   *attesttest.SimulatedNode
	ekHash string
	enroll *api.EnrollmentClient

	// Filled in by the run.
	sessions []string // every session it began, in order
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// errAbandoned: the node gave up its session on purpose (it "rebooted").
var errAbandoned = errors.New("session abandoned")

// attempt runs one enrollment with a fresh AK. begun, if set, runs once
// the session is begun; pause, if set, between the nonce and the quote (an
// error from it abandons the session).
func (n *itNode) attempt(ctx context.Context, begun func(), pause func() error) error {
	p, err := n.node.NewProver()
	if err != nil {
		return err
	}
	defer p.Close()
	id, err := p.Identity()
	if err != nil {
		return err
	}
	if len(id.EKCertificate) == 0 {
		return fmt.Errorf("swtpm has no EK certificate in NV")
	}
	n.ekHash = attest.EKHash(id.EKPublic)
	b, err := n.enroll.Begin(ctx, &api.BeginRequest{Name: n.name, Role: itRole, Identity: id})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	n.sessions = append(n.sessions, b.Session)
	if begun != nil {
		begun()
	}
	secret, err := p.ActivateCredential(b.Challenge)
	if err != nil {
		return err
	}
	act, err := n.enroll.Activate(ctx, &api.ActivateRequest{Session: b.Session, Secret: secret})
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	if pause != nil {
		if err := pause(); err != nil {
			return err
		}
	}
	ev, err := p.Quote(act.Nonce, act.PCRs)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: n.name}, DNSNames: []string{n.name}}, key)
	if err != nil {
		return err
	}
	res, err := n.enroll.Enroll(ctx, &api.EnrollRequest{Session: b.Session, Nonce: act.Nonce, Evidence: ev, BuildID: itBuild, CSR: csr})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	cert, err := x509.ParseCertificate(res.Certificate)
	if err != nil {
		return err
	}
	n.cert, n.key = cert, key
	return nil
}

func (n *itNode) tlsCert(t *testing.T) *tls.Certificate {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(n.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// itWait waits for ch or fails the test at the deadline.
func itWait(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
}

// N nodes, each with its own swtpm (an EK certificate from swtpm's local CA),
// enroll concurrently over the hub's TLS gRPC API while the hub is stopped
// (server down, store closed) and started again on the same state. Like
// real nodes, they retry from a fresh session when the hub goes away.
//
//   - nodes 0, 4: stop between nonce and quote until the hub is back, then
//     quote in the session begun before the restart;
//   - nodes 1, 5: stop there and, after the restart, abandon that session
//     and start over with a fresh AK (as after a reboot);
//   - nodes 2, 6: quote while the hub is down (refused: unavailable), then
//     start over;
//   - nodes 3, 7: begin a session just before the hub stops and race the
//     restart with the rest of it.
//
// Afterwards every node is enrolled exactly once with the certificate it
// holds, which chains to the cluster CA; nothing is half-enrolled; the
// abandoned sessions just expire; the audit chain verifies. Then, over gRPC:
// no client certificate is unauthenticated, a reader may not revoke, and a
// revoked node's certificate is refused at once.
func TestSWTPMEnrollmentsWithRestart(t *testing.T) {
	for _, tool := range []string{"swtpm", "swtpm_setup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()

	pred, err := attesttest.RecordedPrediction(filepath.Join("..", "..", attesttest.RecordedBootDir), nil)
	if err != nil {
		t.Fatal(err)
	}
	issuerPath, err := attesttest.SWTPMIssuerCert()
	if err != nil {
		t.Fatal(err)
	}
	ekCAs := x509.NewCertPool()
	if raw, err := os.ReadFile(issuerPath); err != nil || !ekCAs.AppendCertsFromPEM(raw) {
		t.Fatalf("swtpm local CA %s: %v", issuerPath, err)
	}

	// The machines: one swtpm each, booted at the stub, sysinit or ready
	// phase. The swtpm processes live until the nodes are closed (cleanups
	// run last-registered first).
	dir := t.TempDir()
	swCtx, swCancel := context.WithTimeout(context.Background(), itTimeout+time.Minute)
	t.Cleanup(swCancel)
	nodes := make([]*itNode, itNodes)
	var startErr sync.Map
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			sw, err := attesttest.StartSWTPM(swCtx, filepath.Join(dir, fmt.Sprintf("tpm-%d", i)))
			if err != nil {
				startErr.Store(i, err)
				return
			}
			sn, err := attesttest.Predicted(sw.TPM(), pred, measure.BootPhases[i%len(measure.BootPhases)])
			if err != nil {
				sw.Close()
				startErr.Store(i, err)
				return
			}
			nodes[i] = &itNode{name: fmt.Sprintf("tpm-%d", i), node: sn}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			t.Cleanup(func() {
				if err := n.node.Close(); err != nil {
					t.Errorf("%s: %v", n.name, err)
				}
			})
		}
	}
	startErr.Range(func(k, v any) bool {
		t.Errorf("swtpm %d: %v", k, v)
		return true
	})
	if t.Failed() {
		t.FailNow()
	}
	h := &itHub{t: t, path: filepath.Join(dir, "hub.db"), ca: newCA(t), ver: AttestVerifier{EKCAs: ekCAs}, policy: itPolicy{pred}}
	h.start()
	t.Cleanup(h.stop)
	for _, n := range nodes {
		n.enroll = api.NewEnrollmentClient(h.dial(t, nil))
	}

	var (
		parked, racing, downFailed sync.WaitGroup
		race, down, up             = make(chan struct{}), make(chan struct{}), make(chan struct{})
		once                       [3]sync.Once
		retries                    atomic.Int64
	)
	release := func(i int, ch chan struct{}) { once[i].Do(func() { close(ch) }) }
	parked.Add(itNodes * 3 / 4)
	racing.Add(itNodes / 4)
	downFailed.Add(itNodes / 4)
	wg = sync.WaitGroup{}
	for i, n := range nodes {
		wg.Go(func() {
			if i%4 == 3 {
				<-race
			}
			// played: the node's part in the restart (racing or parked)
			// is done. An attempt that fails before reaching it (a
			// connection lost) leaves it to the next attempt.
			played := false
			for attempt := 0; ; attempt++ {
				var begun func()
				var pause func() error
				if !played {
					switch i % 4 {
					case 3:
						begun = func() { played = true; racing.Done() }
					case 0:
						pause = func() error { played = true; parked.Done(); <-up; return nil }
					case 1:
						pause = func() error { played = true; parked.Done(); <-up; return errAbandoned }
					case 2:
						pause = func() error { played = true; parked.Done(); <-down; return nil }
					}
				}
				before := played
				err := n.attempt(ctx, begun, pause)
				if err == nil {
					return
				}
				if i%4 == 2 && !before && played {
					downFailed.Done() // its quote went to the stopped hub
				}
				if ctx.Err() != nil || attempt > 50 {
					t.Errorf("%s: gave up after %d attempts: %v", n.name, attempt+1, err)
					return
				}
				if !errors.Is(err, errAbandoned) && status.Code(err) != codes.Unavailable {
					t.Errorf("%s: attempt %d: %v", n.name, attempt+1, err)
					return
				}
				t.Logf("%s: attempt %d: %v; starting over", n.name, attempt+1, err)
				retries.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	allDone := waitChan(&wg)
	// However the test ends, the nodes' goroutines end before the hub and
	// the swtpms are closed.
	t.Cleanup(func() {
		cancel()
		release(0, race)
		release(1, down)
		release(2, up)
		select {
		case <-allDone:
		case <-time.After(30 * time.Second):
			t.Error("enrolling goroutines still running 30 s after the test")
		}
	})

	itWait(t, ctx, waitChan(&parked), "nodes to reach their quote")
	release(0, race)
	itWait(t, ctx, waitChan(&racing), "racing nodes to begin")
	h.stop() // the restart: in-flight calls finish, then the store closes
	release(1, down)
	itWait(t, ctx, waitChan(&downFailed), "quotes sent while the hub is down to fail")
	h.start()
	release(2, up)
	itWait(t, ctx, allDone, "every node to enroll")
	if t.Failed() {
		return
	}
	t.Logf("%d nodes enrolled; %d attempts started over", itNodes, retries.Load())
	if retries.Load() < itNodes/2 {
		t.Errorf("%d attempts started over, want at least %d (abandoned and sent while down)", retries.Load(), itNodes/2)
	}

	// Every certificate chains to the cluster CA and names its node.
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Certificate())
	for _, n := range nodes {
		if _, err := n.cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: certificate: %v", n.name, err)
		}
		if n.cert.Subject.CommonName != n.name || len(n.cert.DNSNames) != 1 || n.cert.DNSNames[0] != n.name {
			t.Errorf("%s: certificate for %q %v", n.name, n.cert.Subject.CommonName, n.cert.DNSNames)
		}
	}

	// What is on disk, read after another restart.
	h.stop()
	st, err := Open(h.path)
	if err != nil {
		t.Fatal(err)
	}
	itCheckState(t, st, nodes)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	h.start()
	itCheckAdmin(t, ctx, h, nodes[0])
}

// waitChan closes the returned channel when wg is done.
func waitChan(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch
}

// itCheckState checks the store after the run: each node enrolled once,
// with the certificate it holds and an audit entry for it, nothing
// half-enrolled, interrupted sessions only expiring, the audit chain whole.
func itCheckState(t *testing.T, st *Store, nodes []*itNode) {
	t.Helper()
	head, err := st.VerifyAuditChain()
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	var all []AuditEntry
	for from := uint64(1); from <= head.Seq; {
		page, err := st.Audit(from, MaxAuditPage)
		if err != nil || len(page) == 0 {
			t.Fatalf("audit from %d: %d entries, %v", from, len(page), err)
		}
		all = append(all, page...)
		from = page[len(page)-1].Seq + 1
	}
	enrolled := map[string][]AuditEntry{} // node → its successful enroll entries
	for _, a := range all {
		if a.Action == ActionEnroll && a.Outcome == OutcomeOK {
			enrolled[a.Target] = append(enrolled[a.Target], a)
		}
	}
	records, err := st.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(nodes) {
		t.Errorf("%d node records, want %d", len(records), len(nodes))
	}
	// No half-enrolled record: a serial without its audit entry, or an
	// audit entry whose enrollment is not recorded.
	for _, r := range records {
		es := enrolled[r.Name]
		if r.CertSerial != "" && (len(es) == 0 || !strings.Contains(es[len(es)-1].Detail, r.CertSerial)) {
			t.Errorf("node %s holds certificate %s without an enroll audit entry for it", r.Name, r.CertSerial)
		}
	}
	for name, es := range enrolled {
		r, err := st.Node(name)
		if err != nil || r.State != StateEnrolled {
			t.Errorf("audit says %s enrolled (%d entries) but its record is %+v, %v", name, len(es), r, err)
		}
	}
	byName := map[string]*itNode{}
	for _, n := range nodes {
		byName[n.name] = n
		r, err := st.Node(n.name)
		if err != nil {
			t.Errorf("%s lost: %v", n.name, err)
			continue
		}
		serial := pki.SerialString(n.cert.SerialNumber)
		if r.State != StateEnrolled || r.CertSerial != serial || r.EKHash != n.ekHash || r.BuildID != itBuild ||
			len(r.Certs) != 1 || r.Certs[0].Serial != serial {
			t.Errorf("%s: %+v, want enrolled once with EK %s and certificate %s", n.name, r, n.ekHash, serial)
		}
		if es := enrolled[n.name]; len(es) != 1 || !strings.Contains(es[0].Detail, serial) || !strings.Contains(es[0].Detail, "(certificate)") {
			t.Errorf("%s: enroll audit entries %+v, want one naming %s, admitted by its EK certificate", n.name, es, serial)
		}
	}

	sessions, err := st.Sessions()
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(itSessionTTL)
	done, dangling := 0, 0
	for _, s := range sessions {
		n := byName[s.Name]
		switch {
		case n == nil:
			t.Errorf("session %s of unknown node %s", s.ID, s.Name)
		case s.Done && s.Outcome == string(StateEnrolled):
			done++
			if last := n.sessions[len(n.sessions)-1]; s.ID != last {
				t.Errorf("%s: session %s ended enrolled, but the node's certificate came from session %s", s.Name, s.ID, last)
			}
		case s.Done:
			t.Errorf("%s: session %s ended %s", s.Name, s.ID, s.Outcome)
		case !s.Expired(later):
			t.Errorf("%s: session %s neither completed nor expiring (expires %s)", s.Name, s.ID, s.Expires)
		default:
			dangling++
		}
	}
	if done != len(nodes) || dangling < len(nodes)/2 {
		t.Errorf("%d sessions completed (want %d), %d interrupted (want at least %d)", done, len(nodes), dangling, len(nodes)/2)
	}
	// Nodes 0 and 4 completed the session they began before the restart.
	for i := 0; i < len(nodes); i += 4 {
		if n := nodes[i]; len(n.sessions) != 1 {
			t.Errorf("%s carried its session over the restart but began %d", n.name, len(n.sessions))
		}
	}
	pruned, err := st.PruneSessions(later.Add(time.Second))
	if err != nil || pruned != len(sessions) {
		t.Errorf("prune at session expiry: %d of %d sessions, %v", pruned, len(sessions), err)
	}
	if left, err := st.Sessions(); err != nil || len(left) != 0 {
		t.Errorf("sessions left after expiry: %d, %v", len(left), err)
	}
	if _, err := st.VerifyAuditChain(); err != nil {
		t.Errorf("audit chain after pruning: %v", err)
	}
}

// itCheckAdmin checks the admin API's authentication over TLS: no client
// certificate, a reader's, a node's before and after its revocation.
func itCheckAdmin(t *testing.T, ctx context.Context, h *itHub, victim *itNode) {
	t.Helper()
	issue := func(name string, role pki.Role) *tls.Certificate {
		is, err := h.ca.IssueClient(name, role, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := is.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	anonymous := api.NewAdminClient(h.dial(t, nil))
	reader := api.NewAdminClient(h.dial(t, issue("rita", pki.RoleReader)))
	admin := api.NewAdminClient(h.dial(t, issue("alice", pki.RoleAdmin)))
	asNode := api.NewAdminClient(h.dial(t, victim.tlsCert(t)))

	if _, err := anonymous.ListNodes(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListNodes without a client certificate: %v, want Unauthenticated", err)
	}
	list, err := reader.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Nodes) != itNodes {
		t.Errorf("reader lists %d nodes, want %d", len(list.Nodes), itNodes)
	}
	for _, n := range list.Nodes {
		if n.State != StateEnrolled {
			t.Errorf("node %s is %s", n.Name, n.State)
		}
	}
	if _, err := reader.Revoke(ctx, victim.name, "a reader tries"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Revoke by a reader: %v, want PermissionDenied", err)
	}
	// The node's certificate authenticates (a node may not read the
	// registry, but it is who it says) until it is revoked.
	if _, err := asNode.ListNodes(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListNodes with the node's certificate before revocation: %v, want PermissionDenied", err)
	}
	got, err := admin.Revoke(ctx, victim.name, "integration test")
	if err != nil || got.State != StateRevoked {
		t.Fatalf("Revoke by the admin: %+v, %v", got, err)
	}
	for _, c := range []*api.AdminClient{asNode, api.NewAdminClient(h.dial(t, victim.tlsCert(t)))} {
		if _, err := c.ListNodes(ctx); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("the revoked node's certificate: %v, want Unauthenticated (revoked)", err)
		}
	}
	audit, err := admin.Audit(ctx, 1, MaxAuditPage)
	if err != nil || !audit.ChainOK {
		t.Errorf("audit over gRPC: chain ok %v, %v", audit != nil && audit.ChainOK, err)
	}
	if _, err := h.store.VerifyAuditChain(); err != nil {
		t.Error(err)
	}
}
