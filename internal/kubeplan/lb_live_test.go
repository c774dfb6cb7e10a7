package kubeplan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
)

// TestHAProxyChecksReadyz runs haproxy with the configuration kubeplan
// writes (the CA's path changed, and its check interval shortened to
// keep the test short) in front of three fake API servers on loopback
// addresses, and a fourth address nothing listens on: cp-1 and cp-3 with
// certificates for their names, cp-2 with one the CA signed for another
// name. Through the VIP only cp-1 and cp-3 answer (the check verifies the
// name, not only the chain); when cp-1's /readyz fails it is taken out,
// and when cp-3's fails too haproxy forwards to every server that accepts
// a connection rather than to none (panic mode), cp-4 not among them;
// once ready they are back. It needs haproxy and root (haproxy's chroot
// and user), and takes about 15 s.
func TestHAProxyChecksReadyz(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (apt-get install haproxy)")
	}
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("runs haproxy as root for about 15 s (-short, or not root)")
	}
	ca, caKey := newCA(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	var ready1, ready3 atomic.Bool
	ready1.Store(true)
	ready3.Store(true)
	serve := func(addr, answer string, ready *atomic.Bool, certNames ...string) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s: %v", addr, err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" && !ready.Load() {
				http.Error(w, "etcd failed", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, answer)
		}), ErrorLog: log.New(io.Discard, "", 0), TLSConfig: &tls.Config{Certificates: []tls.Certificate{leafFor(t, ca, caKey, certNames[0], certNames[1:]...)}}}
		go srv.ServeTLS(lis, "", "")
		t.Cleanup(func() { srv.Close() })
	}
	var always atomic.Bool
	always.Store(true)
	serve("127.0.0.2:6443", "cp-1", &ready1, "cp-1", "kubernetes")
	serve("127.0.0.3:6443", "cp-2", &always, "intruder")
	serve("127.0.0.6:6443", "cp-3", &ready3, "cp-3", "kubernetes")

	p := &Plan{Cluster: "live", Node: "lb-1", LB: &LB{VIP: "127.0.0.4", PrefixBits: 8, Address: "127.0.0.5",
		Priority: 254, RouterID: 4, Backends: []Backend{{"cp-1", "127.0.0.2"}, {"cp-2", "127.0.0.3"}, {"cp-3", "127.0.0.6"}, {"cp-4", "127.0.0.7"}}}}
	cfg := strings.ReplaceAll(string(haproxyConfig(p)), pki("ca.crt"), caFile)
	if !strings.Contains(cfg, "inter "+haproxyInter+" ") {
		t.Fatalf("the configuration has no %q to shorten:\n%s", "inter "+haproxyInter, cfg)
	}
	cfg = strings.ReplaceAll(cfg, "inter "+haproxyInter+" ", "inter 1s ")
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", cfgFile)
	// haproxy writes while the test reads: the log is locked.
	out := &lockedLog{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	// The client verifies the name every real API server's certificate
	// carries; the intruder's has only its own.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes"}}}
	// via asks through the VIP who answers ("" when nobody does, or the
	// intruder, which the client refuses).
	via := func() string {
		res, err := client.Get("https://127.0.0.4:6443/")
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s; haproxy said:\n%s", what, out.String())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	// only: eight requests in a row answered, each by one of names.
	only := func(names ...string) func() bool {
		return func() bool {
			for range 8 {
				if got := via(); !slices.Contains(names, got) {
					return false
				}
			}
			return true
		}
	}
	waitFor("only cp-1 and cp-3 answer through the VIP", only("cp-1", "cp-3"))
	ready1.Store(false)
	waitFor("cp-1 out once its /readyz fails", only("cp-3"))
	ready3.Store(false)
	waitFor("the /readyz backend empty once all fail their checks", func() bool {
		return strings.Contains(out.String(), "kube-apiserver' has no server available")
	})
	// All of them, not the first backup alone: that one may be the dead one.
	served := map[string]int{}
	for range 12 {
		served[via()]++
	}
	if served["cp-1"] == 0 || served["cp-3"] == 0 {
		t.Errorf("while every check failed, answers through the VIP %v, want both cp-1 and cp-3; haproxy said:\n%s", served, out.String())
	}
	ready1.Store(true)
	ready3.Store(true)
	waitFor("cp-1 and cp-3 back once ready, the intruder out again", only("cp-1", "cp-3"))
	// Why each was out, in haproxy's words.
	for _, want := range []string{"cp-2 failed, reason: Layer6", "certificate different from the expected one",
		"cp-1 failed, reason: Layer7 wrong status, code: 500", "kube-apiserver-listening/cp-4 is DOWN"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("haproxy's log lacks %q:\n%s", want, out.String())
		}
	}
}

// lockedLog is a strings.Builder a child process may write to while the
// test reads it.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "live CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func leafFor(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, more ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: append([]string{name}, more...),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestHAProxyBindsVIPItDoesNotHold: a backup load balancer's haproxy
// listens on the VIP before keepalived moves it there ("transparent"), so
// it starts with an address no interface holds (192.0.2.10, TEST-NET-1).
func TestHAProxyBindsVIPItDoesNotHold(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (apt-get install haproxy)")
	}
	if os.Geteuid() != 0 {
		t.Skip("runs haproxy as root (its chroot and user)")
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, testCA(t), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Plan{Cluster: "live", Node: "lb-2", LB: &LB{VIP: "192.0.2.10", PrefixBits: 24, Address: "192.0.2.2",
		Priority: 253, RouterID: 10, Backends: []Backend{{"cp-1", "127.0.0.2"}}}}
	// run says whether haproxy exited within limit: one that started keeps
	// running; one that cannot bind exits, within seconds on a busy machine.
	run := func(cfg string, limit time.Duration) (exited bool, out string) {
		f := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(f, []byte(strings.ReplaceAll(cfg, pki("ca.crt"), caFile)), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		b, _ := exec.CommandContext(ctx, bin, "-db", "-f", f).CombinedOutput()
		return ctx.Err() == nil, string(b)
	}
	cfg := string(haproxyConfig(p))
	if exited, out := run(cfg, 1500*time.Millisecond); exited {
		t.Fatalf("haproxy did not start on a VIP this node does not hold:\n%s", out)
	}
	// Without "transparent" it cannot: the test can tell.
	if exited, _ := run(strings.Replace(cfg, " transparent", "", 1), 30*time.Second); !exited {
		t.Fatal("haproxy binds an address no interface holds even without transparent: the test proves nothing")
	}
}

// TestKeepalivedFollowsReadiness runs two keepalived with the
// configurations two control planes holding the VIP get (their readiness
// files moved into the test's directory, advertisements every second to
// keep it short), each in a network namespace the test makes, joined by a
// veth. Neither ready (the files missing, created not ready): one still
// holds the VIP. The other ready: it takes the VIP. Both ready: a tie, the
// VIP stays. The holder not ready: the ready one takes it. Neither ready:
// the VIP stays held. Root, keepalived and ip; about 30 s.
//
// The tracked process is left out here: the kernel's process events
// connector answers only in a machine's first network namespace (where
// keepalived runs on a node), not in the test's; the e2e runs check it.
func TestKeepalivedFollowsReadiness(t *testing.T) {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed (apt-get install keepalived)")
	}
	if _, err := exec.LookPath("ip"); err != nil || testing.Short() || os.Geteuid() != 0 {
		t.Skip("runs keepalived as root in network namespaces for about 30 s (-short, no ip, or not root)")
	}
	ip := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	type cp struct {
		name, ns, ifc, addr, ready string
		log                        *lockedLog
	}
	dir := t.TempDir()
	cps := []*cp{{name: "cp-1", ifc: "kda", addr: "192.0.2.2"}, {name: "cp-2", ifc: "kdb", addr: "192.0.2.3"}}
	for i, c := range cps {
		c.ns = fmt.Sprintf("kdtest-vrrp%d-%d", i, os.Getpid())
		c.ready = filepath.Join(dir, c.name+"-api-not-ready")
		c.log = &lockedLog{}
		ip("netns", "add", c.ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", c.ns).Run() })
	}
	ip("-n", cps[0].ns, "link", "add", "kda", "type", "veth", "peer", "name", "kdb", "netns", cps[1].ns)
	for _, c := range cps {
		ip("-n", c.ns, "addr", "add", c.addr+"/24", "dev", c.ifc)
		for _, l := range []string{"lo", c.ifc} {
			ip("-n", c.ns, "link", "set", l, "up")
		}
	}
	// A veth has carrier only once both ends are up, a moment after: a
	// keepalived started before that sees its interface down and enters
	// FAULT, which on a loaded machine made this test flaky.
	for _, c := range cps {
		for end := time.Now().Add(10 * time.Second); !strings.Contains(ip("-n", c.ns, "-o", "link", "show", "dev", c.ifc), "LOWER_UP"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s has no carrier within 10 s: %s", c.ifc, ip("-n", c.ns, "-o", "link", "show", "dev", c.ifc))
			}
		}
	}
	for i, c := range cps {
		p := &Plan{Cluster: "live", Node: c.name, LB: &LB{VIP: "192.0.2.10", PrefixBits: 24, Address: c.addr,
			Peers: []string{cps[1-i].addr}, Priority: CPVRRPPriority, RouterID: 10, Track: APIServer}}
		cfg := string(keepalivedConfig(p, Host{LANInterface: c.ifc}))
		track := "\ttrack_process {\n\t\t" + string(APIServer) + "\n\t}\n"
		if !strings.Contains(cfg, track) || !strings.Contains(cfg, APINotReadyFile) || !strings.Contains(cfg, "advert_int 2\n") {
			t.Fatalf("the configuration changed, the test no longer runs it:\n%s", cfg)
		}
		cfg = strings.ReplaceAll(strings.ReplaceAll(cfg, track, ""), APINotReadyFile, c.ready)
		cfg = strings.Replace(cfg, "advert_int 2\n", "advert_int 1\n", 1)
		cfgFile := filepath.Join(dir, c.name+".conf")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		pid := func(what string) string { return filepath.Join(dir, c.name+"-"+what+".pid") }
		cmd := exec.Command("ip", "netns", "exec", c.ns, bin, "--dont-fork", "--log-console", "--vrrp", "--use-file="+cfgFile,
			"--pid="+pid("k"), "--vrrp_pid="+pid("v"), "--checkers_pid="+pid("c"))
		cmd.Stdout, cmd.Stderr = c.log, c.log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	logs := func() string {
		var b strings.Builder
		for _, c := range cps {
			fmt.Fprintf(&b, "--- %s:\n%s", c.name, c.log.String())
		}
		return b.String()
	}
	// holder is the control plane holding the VIP ("" none, "both").
	holder := func() string {
		var h []string
		for _, c := range cps {
			if strings.Contains(ip("-n", c.ns, "-o", "addr", "show", "dev", c.ifc), "192.0.2.10/24") {
				h = append(h, c.name)
			}
		}
		switch len(h) {
		case 0:
			return ""
		case 1:
			return h[0]
		}
		return "both"
	}
	waitFor := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(limit); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s within %s (holder %q); keepalived said:\n%s", what, limit, holder(), logs())
			}
		}
	}
	// stays: the VIP on name for d, longer than a takeover takes (three
	// advertisements missed).
	stays := func(what, name string, d time.Duration) {
		t.Helper()
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if h := holder(); h != name {
				t.Fatalf("%s: the VIP on %q, want it to stay on %s; keepalived said:\n%s", what, h, name, logs())
			}
		}
	}
	setReady := func(c *cp, ready bool) {
		t.Helper()
		v := "1\n"
		if ready {
			v = "0\n"
		}
		if err := durable.WriteFile(c.ready, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	held := ""
	waitFor("one holds the VIP while neither API server is ready", 15*time.Second, func() bool {
		held = holder()
		return held == "cp-1" || held == "cp-2"
	})
	for _, c := range cps {
		if b, err := os.ReadFile(c.ready); err != nil || string(b) != "1\n" {
			t.Fatalf("keepalived did not create %s's readiness file not ready: %q, %v", c.name, b, err)
		}
	}
	h, o := cps[0], cps[1]
	if held == cps[1].name {
		h, o = cps[1], cps[0]
	}
	setReady(o, true)
	waitFor("the ready one takes the VIP from the not-ready holder", 15*time.Second, func() bool { return holder() == o.name })
	setReady(h, true)
	stays("both ready", o.name, 6*time.Second)
	setReady(o, false)
	waitFor("the ready one takes the VIP from the holder no longer ready", 15*time.Second, func() bool { return holder() == held })
	setReady(h, false)
	stays("neither ready", held, 4*time.Second)
	if strings.Contains(strings.ToLower(logs()), "entering fault state") {
		t.Errorf("an instance went to fault on readiness:\n%s", logs())
	}
}
