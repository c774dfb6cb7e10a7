//go:build integration

package firewall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// listenIn opens a TCP listener inside network namespace ns (the socket
// stays in it after the thread switches back) answering "ok".
func listenIn(t *testing.T, ns, addr string) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	lis, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("back to the test's namespace: %v", err) // the thread stays locked: it dies with the goroutine
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "ok")
			c.Close()
		}
	}()
}

// dial reports "ok" (answered), "refused" or "dropped" (no answer in time).
func dial(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	var ne net.Error
	switch {
	case err == nil:
		defer c.Close()
		b, _ := io.ReadAll(c)
		return string(b)
	case errors.Is(err, unix.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "dropped"
	default:
		return err.Error()
	}
}

// A node in its own network namespace behind a veth: before the baseline
// every port answers or refuses; with it only the listed ports answer and
// the rest are dropped without a word; applying it again replaces the table.
func TestBaselineInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (apt-get install nftables)")
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	ns, host, node := "kdfw"+id, "kdfwh"+id, "kdfwn"+id
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", node)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	sh(t, "ip", "link", "set", node, "netns", ns)
	sh(t, "ip", "address", "add", "10.251.7.1/30", "dev", host)
	sh(t, "ip", "link", "set", host, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "address", "add", "10.251.7.2/30", "dev", node)
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", node, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	listenIn(t, ns, "10.251.7.2:7444")
	listenIn(t, ns, "10.251.7.2:9999")

	for port, want := range map[string]string{"7444": "ok", "9999": "ok", "9998": "refused"} {
		if got := dial("10.251.7.2:" + port); got != want {
			t.Fatalf("before the baseline, port %s: %s, want %s", port, got, want)
		}
	}
	// nft in the namespace, and with /etc/protocols empty as in a node's
	// minimal image, so a rule that needs a protocol name fails here too.
	nft = []string{"unshare", "-m", "sh", "-c", `mount --bind /dev/null /etc/protocols && exec ip netns exec "$0" nft "$@"`, ns}
	t.Cleanup(func() { nft = []string{"nft"} })
	b := Baseline{Planes: []string{"wg-control"}, WireGuardPorts: []int{51820}, TCPPorts: []int{7444}}
	for i := 0; i < 2; i++ { // the second apply replaces the table
		if err := Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for port, want := range map[string]string{"7444": "ok", "9999": "dropped", "9998": "dropped"} {
		if got := dial("10.251.7.2:" + port); got != want {
			t.Errorf("with the baseline, port %s: %s, want %s", port, got, want)
		}
	}
	if tables := sh(t, "ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Count(tables, "table inet kubedos") != 1 {
		t.Errorf("tables after two applies:\n%s", tables)
	}
	// A bad baseline is refused before nft runs, and the table stays.
	if err := Apply(context.Background(), Baseline{TCPPorts: []int{0}}); err == nil {
		t.Error("a bad baseline was applied")
	}
	if got := dial("10.251.7.2:7444"); got != "ok" {
		t.Errorf("after a refused apply, port 7444: %s", got)
	}
}

// A load balancer's node: 6443 answers on the VIP it holds and is dropped
// on its own address (haproxy would listen on both if bound to every
// address; the rule is on the destination, not the socket).
func TestBaselineVIPInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (apt-get install nftables)")
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	ns, host, node := "kdvip"+id, "kdviph"+id, "kdvipn"+id
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", node)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	sh(t, "ip", "link", "set", node, "netns", ns)
	sh(t, "ip", "address", "add", "10.251.8.1/29", "dev", host)
	sh(t, "ip", "link", "set", host, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "address", "add", "10.251.8.2/29", "dev", node)
	sh(t, "ip", "netns", "exec", ns, "ip", "address", "add", "10.251.8.3/29", "dev", node) // the VIP
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", node, "up")
	listenIn(t, ns, "10.251.8.2:6443")
	listenIn(t, ns, "10.251.8.3:6443")
	listenIn(t, ns, "10.251.8.2:2380")
	listenIn(t, ns, "10.251.8.2:2379")
	nft = []string{"unshare", "-m", "sh", "-c", `mount --bind /dev/null /etc/protocols && exec ip netns exec "$0" nft "$@"`, ns}
	t.Cleanup(func() { nft = []string{"nft"} })
	b := Baseline{TCPPorts: []int{7444}, VRRPPeers: []netip.Addr{netip.MustParseAddr("10.251.8.1")},
		Services: []netip.AddrPort{netip.MustParseAddrPort("10.251.8.3:6443")},
		// etcd's ports from listed sources only: the host is a listed
		// peer, not a listed client.
		Allowed: []Allowed{{2380, []netip.Addr{netip.MustParseAddr("10.251.8.1")}}, {2379, []netip.Addr{netip.MustParseAddr("10.251.8.4")}}}}
	if err := Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"10.251.8.3:6443": "ok", "10.251.8.2:6443": "dropped",
		"10.251.8.2:2380": "ok", "10.251.8.2:2379": "dropped"} {
		if got := dial(addr); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}
