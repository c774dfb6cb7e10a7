//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/target/qemu"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// swtpmLocalCA issues the EK certificates swtpm_setup --create-ek-cert makes:
// the stand-in for a TPM vendor's CA.
const swtpmLocalCA = "/var/lib/swtpm-localca/issuercert.pem"

// hubAddrInGuest is the only address a node's isolated NIC reaches; QEMU
// forwards it to the hub on the host's loopback.
const hubAddrInGuest = "10.0.2.100:7443"

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// checkNodeAPI calls the enrolled node's API (mTLS with its enrollment
// certificate) as an operator would, and as callers it must refuse.
func checkNodeAPI(t *testing.T, c *cluster, apiAddr string) {
	t.Helper()
	var ver api.NodeVersion
	// kubedosd starts its API once enrolled; give it a moment.
	var out string
	for deadline := time.Now().Add(90 * time.Second); ; {
		r := run(t, c.dir, nil, "node", "version", "--node", apiAddr, "--name", "master", "--keys", "keys", "-o", "json")
		if r.code == 0 {
			out = r.stdout
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(work, "vm-enroll-good", "serial.log"))
			t.Fatalf("node API not reachable: %s\nconsole:\n%s", r.stderr, lastLines(string(log), 30))
		}
		time.Sleep(3 * time.Second)
	}
	if err := json.Unmarshal([]byte(out), &ver); err != nil {
		t.Fatalf("node version: %v\n%s", err, out)
	}
	t.Logf("node API version: %s", strings.TrimSpace(out))
	if !strings.Contains(out, c.manifest.Roles["master"].RoleID) {
		t.Errorf("node API reports another build: %s", out)
	}
	health := run(t, c.dir, nil, "node", "health", "--node", apiAddr, "--name", "master", "--keys", "keys")
	t.Logf("node health (exit %d):\n%s", health.code, health.stdout)
	if !strings.Contains(health.stdout, "enrolled") {
		t.Errorf("health does not report enrollment:\n%s%s", health.stdout, health.stderr)
	}
	svc := must(t, c.dir, "node", "services", "--node", apiAddr, "--name", "master", "--keys", "keys")
	if !strings.Contains(svc, "kubedosd.service") {
		t.Errorf("services does not list kubedosd:\n%s", svc)
	}
	logs := must(t, c.dir, "node", "logs", "--node", apiAddr, "--name", "master", "--keys", "keys", "-u", "kubedosd", "-n", "20")
	if !strings.Contains(logs, "KUBEDOSD") {
		t.Errorf("logs of kubedosd lack its lines:\n%s", logs)
	}

	// Refused callers: no certificate at all, and a reader asking for a reboot.
	ca, err := pki.LoadCA(filepath.Join(c.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	dial := func(cert *tls.Certificate) *api.NodeClient {
		conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "master", MinVersion: tls.VersionTLS13}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		cc, err := api.Dial(apiAddr, conf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return api.NewNodeClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := dial(nil).Version(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("node API without a client certificate: %v, want Unauthenticated", err)
	}
	reader, err := ca.IssueClient("rita", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := reader.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(&rc).Reboot(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader calling reboot: %v, want PermissionDenied", err)
	}
	if _, err := dial(&rc).Version(ctx); err != nil {
		t.Errorf("reader calling version: %v", err)
	}
}

// startHub runs `kubedos hub serve` for the build on a free loopback port,
// EK certificates from swtpm's local CA accepted.
func startHub(t *testing.T, c *cluster) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	serveHub(t, c, addr, filepath.Join(work, "hubstate"), "--ek-ca", swtpmLocalCA)
	return addr
}

// serveHub runs `kubedos hub serve` for the build on addr until the test ends.
func serveHub(t *testing.T, c *cluster, addr, state string, extra ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"hub", "serve", "cluster.yaml", "--build", c.buildDir,
		"--keys", "keys", "--state", state, "--listen", addr}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "kubedos"), args...)
	cmd.Dir = c.dir
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log("hub: " + sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("hub did not start")
	}
}

// bootEnrolling boots disk as node name with a NIC that reaches only the hub
// (and forwards apiAddr on the host to the node API) and waits for kubedosd
// to report enrolled or refused. The VM runs until the test ends.
func bootEnrolling(t *testing.T, c *cluster, vmName, nodeName, hubAddr, apiAddr, disk string) (enrolled bool, line string) {
	t.Helper()
	enrolled, line, _ = bootEnrollingWith(t, c, vmName, nodeName, hubAddr, apiAddr, disk, "")
	return enrolled, line
}

// bootEnrollingWith is bootEnrolling with the node console's port on
// consoleSock when set; it returns the VM's context too.
func bootEnrollingWith(t *testing.T, c *cluster, vmName, nodeName, hubAddr, apiAddr, disk, consoleSock string) (enrolled bool, line string, ctx context.Context) {
	t.Helper()
	vm, ctx := startVM(t, c, vmName, disk, func(cfg *qemu.VMConfig) {
		cfg.OEMStrings = []string{"kubedos.name=" + nodeName, "kubedos.hub=" + hubAddrInGuest}
		cfg.GuestFwd = []qemu.Forward{{Guest: hubAddrInGuest, Host: hubAddr}}
		if apiAddr != "" {
			cfg.HostFwd = []string{"tcp:" + apiAddr + "-:7444"}
		}
		cfg.ConsoleSocket = consoleSock
	})
	re := regexp.MustCompile(regexp.QuoteMeta(agent.EnrolledLinePrefix) + `.*|` + regexp.QuoteMeta(agent.RefusedLinePrefix) + `.*`)
	m, _ := waitConsole(t, vm, ctx, vmName, re)
	if m == nil {
		t.Fatalf("%s stopped before kubedosd enrolled or was refused", vmName)
	}
	return strings.HasPrefix(m[0], agent.EnrolledLinePrefix), m[0], ctx
}

func nodeJSON(t *testing.T, c *cluster, hubAddr, name string) api.Node {
	t.Helper()
	out := must(t, c.dir, "node", "get", name, "--hub", hubAddr, "--keys", "keys", "-o", "json")
	var n api.Node
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		t.Fatalf("node get: %v\n%s", err, out)
	}
	return n
}

// TestEnrollmentGate: an image whose UKI command line differs from the build,
// re-signed with the db key and its PCR 11 policy with the PCR policy key (an
// attacker holding both: it boots and unlocks), is quarantined with the PCR
// 11 mismatch in the reason: the manifest, signed with the artifact key, is
// what the hub trusts;
// after `node replace`, the real image on a fresh TPM enrolls under the same
// name and gets its certificate; revoke then takes it away.
func TestEnrollmentGate(t *testing.T) {
	c := manufacture(t)
	if _, err := os.Stat(swtpmLocalCA); err != nil {
		t.Skipf("swtpm local CA missing: %v", err)
	}
	hubAddr := startHub(t, c)

	ok, line := bootEnrolling(t, c, "enroll-changed", "master", hubAddr, "", withChangedUKI(t, c, "enroll", dbAndPCRKeys))
	if ok {
		t.Fatalf("a node with a changed UKI enrolled: %s", line)
	}
	n := nodeJSON(t, c, hubAddr, "master")
	if n.State != "quarantined" || n.Reason == nil || n.Reason.Check != "pcr-policy" || !strings.Contains(n.Reason.Detail, "PCR 11") {
		t.Fatalf("want master quarantined for PCR 11, got %+v (reason %+v)", n, n.Reason)
	}
	t.Logf("quarantined: %s: %s", n.Reason.Check, strings.Join(strings.Fields(n.Reason.Detail), " "))
	checkConsoleQuarantine(t, c.dir, hubAddr, "master", n.Reason.Check, "PCR 11")

	must(t, c.dir, "node", "replace", "master", "--hub", hubAddr, "--keys", "keys", "--reason", "e2e: replace the quarantined machine")
	apiAddr := freeAddr(t)
	sock, start := filepath.Join(work, "console-port.sock"), time.Now()
	ok, line, vmCtx := bootEnrollingWith(t, c, "enroll-good", "master", hubAddr, apiAddr, c.role(build.FileDiskQcow2), sock)
	if !ok {
		t.Fatalf("the built image was refused: %s", line)
	}
	// The node console (issue 18), drawn on the console port.
	checkNodeConsole(t, vmCtx, c, sock, hubAddr, "master", start)
	n = nodeJSON(t, c, hubAddr, "master")
	if n.State != "enrolled" || n.BuildID != c.manifest.Roles["master"].RoleID || n.CertSerial == "" || !strings.Contains(line, "serial "+n.CertSerial) {
		t.Fatalf("after enrollment the hub says %+v; node said %q", n, line)
	}

	checkNodeAPI(t, c, apiAddr)

	list := must(t, c.dir, "node", "list", "--hub", hubAddr, "--keys", "keys")
	if !strings.Contains(list, "enrolled") {
		t.Errorf("node list:\n%s", list)
	}
	must(t, c.dir, "node", "revoke", "master", "--hub", hubAddr, "--keys", "keys", "--reason", "e2e")
	if n = nodeJSON(t, c, hubAddr, "master"); n.State != "revoked" {
		t.Errorf("after revoke: %+v", n)
	}
	var audit api.AuditResponse
	if err := json.Unmarshal([]byte(must(t, c.dir, "audit", "--hub", hubAddr, "--keys", "keys", "-o", "json")), &audit); err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range audit.Entries {
		actions[e.Action+"/"+e.Outcome]++
	}
	t.Logf("audit: %d entries %v", len(audit.Entries), actions)
	if !audit.ChainOK || len(audit.Entries) < 4 {
		t.Errorf("audit chain ok=%v with %d entries", audit.ChainOK, len(audit.Entries))
	}
	fmt.Fprintln(os.Stderr, "enrollment gate: quarantine → replace → enroll → revoke done")
}
