package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki/pkitest"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// newTestCA makes a cluster CA like the key ceremony's (P-256, CA:TRUE).
func newTestCA(t testing.TB, cn string) *pki.CA {
	t.Helper()
	return pkitest.NewCAWith(t, cn, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// writeNodeIdentity has ca sign a node certificate for name and writes the
// identity files as enrollment does; it returns the certificate.
func writeNodeIdentity(t testing.TB, ca *pki.CA, dir, name string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignNodeCSR(csr, name, "worker", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saveIdentity(dir, key, cert.Raw, cert); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, AKFile), []byte("ak"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert
}

func clientCert(t testing.TB, ca *pki.CA, name string, role pki.Role) *tls.Certificate {
	t.Helper()
	is, err := ca.IssueClient(name, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// fakeSystem stands in for systemd, the journal and the kernel.
type fakeSystem struct {
	mu        sync.Mutex
	state     string
	failed    []string
	listed    int // FailedUnits calls
	units     map[string]api.Unit
	restarted []string
	powered   chan string
	journal   []api.LogEntry
	queries   []JournalQuery
	kernel    []api.KernelMessage
	hostname  string
	sysctls   map[string]string
	actions   map[string]UnitActions
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{
		state: "running",
		units: map[string]api.Unit{
			"chrony.service":   {Name: "chrony.service", Load: "loaded", Active: "active", Sub: "running", Description: "chrony, an NTP client/server"},
			"kubedosd.service": {Name: "kubedosd.service", Load: "loaded", Active: "active", Sub: "running"},
		},
		powered:  make(chan string, 4),
		hostname: "debian",
		sysctls:  map[string]string{"net.ipv4.ip_forward": "0", "vm.swappiness": "60"},
	}
}

func (f *fakeSystem) SystemState(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, nil
}

func (f *fakeSystem) FailedUnits(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed++
	return slices.Clone(f.failed), nil
}

func (f *fakeSystem) Services(context.Context) ([]api.Unit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Unit
	for _, u := range f.units {
		out = append(out, u)
	}
	return out, nil
}

func (f *fakeSystem) Unit(_ context.Context, name string) (api.Unit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.units[name]; ok {
		return u, nil
	}
	return api.Unit{Name: name, Load: "not-found", Active: "inactive", Sub: "dead"}, nil
}

func (f *fakeSystem) UnitActions(_ context.Context, name string) (UnitActions, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.actions[name], nil
}

func (f *fakeSystem) Restart(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarted = append(f.restarted, name)
	return nil
}

func (f *fakeSystem) Power(_ context.Context, action string) error {
	f.powered <- action
	return nil
}

func (f *fakeSystem) Journal(_ context.Context, q JournalQuery) ([]api.LogEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return slices.Clone(f.journal), nil
}

func (f *fakeSystem) FollowJournal(ctx context.Context, q JournalQuery, fn func(api.LogEntry) error) error {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	entries := slices.Clone(f.journal)
	f.mu.Unlock()
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func (f *fakeSystem) Kernel(context.Context) ([]api.KernelMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.kernel), nil
}

func (f *fakeSystem) Hostname() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hostname, nil
}

func (f *fakeSystem) SetHostname(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hostname = name
	return nil
}

func (f *fakeSystem) Sysctl(key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.sysctls[key]
	if !ok {
		return "", ErrNotFound
	}
	return strings.Join(strings.Fields(v), " "), nil
}

func (f *fakeSystem) SetSysctl(key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sysctls[key]; !ok {
		return ErrNotFound
	}
	f.sysctls[key] = value
	return nil
}

// nodeEnv is a node API served on loopback with real TLS.
type nodeEnv struct {
	t        *testing.T
	ca       *pki.CA
	sys      *fakeSystem
	revs     *RevocationList
	api      *NodeAPI
	addr     string
	stateDir string
	idDir    string
	nodeCert *x509.Certificate

	mu     sync.Mutex
	audits []AuditRecord
}

func newNodeEnv(t *testing.T, opts ...func(*NodeAPIConfig)) *nodeEnv {
	t.Helper()
	e := &nodeEnv{t: t, ca: newTestCA(t, "kubedos test CA"), sys: newFakeSystem(), stateDir: t.TempDir()}
	e.idDir = filepath.Join(e.stateDir, "identity")
	e.nodeCert = writeNodeIdentity(t, e.ca, e.idDir, "w-1")
	var err error
	if e.revs, err = LoadRevocationList(""); err != nil {
		t.Fatal(err)
	}
	// Fresh: a stale list refuses all but readers.
	if err := e.revs.Update(nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	pcrs := filepath.Join(t.TempDir(), "pcrs")
	if err := os.MkdirAll(pcrs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pcrs, "7"), []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mounts, []byte(roMountInfo), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := NodeAPIConfig{Name: "w-1", Role: "worker", CA: e.ca.Certificate(), IdentityDir: e.idDir,
		StateDir: e.stateDir, Status: Status{Build: "b-0011", Slot: "a", RootHash: strings.Repeat("cd", 32)},
		System: e.sys, Revocations: e.revs, PCRDir: pcrs, MountInfo: mounts, PowerDelay: 300 * time.Millisecond,
		Audit: func(r AuditRecord) { e.mu.Lock(); e.audits = append(e.audits, r); e.mu.Unlock() },
		Logf:  t.Logf}
	for _, o := range opts {
		o(&cfg)
	}
	e.api, err = NewNodeAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.api.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

// roMountInfo is a node's mounts: the verity root read-only, /var an
// overlay on state.
const roMountInfo = `22 1 253:0 / / ro,relatime shared:1 - squashfs /dev/mapper/kubedos-root ro,errors=continue
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
30 22 8:6 / /state rw,nosuid,nodev,relatime shared:8 - ext4 /dev/vda6 rw
31 22 0:30 / /var rw,relatime shared:9 - overlay overlay rw,lowerdir=/var,upperdir=/state/var.upper,workdir=/state/var.work
`

// client dials the node as ServerName w-1 with cert (nil: none).
func (e *nodeEnv) client(cert *tls.Certificate) *api.NodeClient {
	return api.NewNodeClient(e.dial(cert, nil))
}

func (e *nodeEnv) dial(cert *tls.Certificate, verify func(tls.ConnectionState) error) *grpc.ClientConn {
	e.t.Helper()
	conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "w-1", MinVersion: tls.VersionTLS13, VerifyConnection: verify}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	cc, err := grpc.NewClient(e.addr, append(api.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *nodeEnv) as(name string, role pki.Role) *api.NodeClient {
	return e.client(clientCert(e.t, e.ca, name, role))
}

func (e *nodeEnv) auditLog() []AuditRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.audits)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// with runs fn under the fake's lock: the server reads the fake from its
// own goroutines.
func (f *fakeSystem) with(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeSystem) restarts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.restarted)
}

func (f *fakeSystem) journalQueries() []JournalQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

// serveFakeHub serves what register puts on a gRPC server with a hub
// certificate from ca, as nodes dial it (client certificates optional, as
// on the real hub); the server stops with the test or earlier by Stop.
func serveFakeHub(t *testing.T, ca *pki.CA, register func(*grpc.Server)) (string, *grpc.Server) {
	t.Helper()
	hubCert, err := ca.IssueServer([]string{api.HubServerName}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := hubCert.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(append(api.ServerOptions(), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS13})))...)
	register(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), s
}
