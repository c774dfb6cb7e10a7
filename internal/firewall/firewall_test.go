package firewall

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A kubelet node's pod bridge is trusted like a plane and forwarded to and
// from the planes; a bad bridge name is refused like a bad plane name.
func TestRulesetPods(t *testing.T) {
	got, err := Baseline{Planes: []string{"wg-kubernetes"}, Pods: []string{"cni0"}}.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`iifname { "cni0", "wg-kubernetes" } accept`,
		`iifname { "cni0", "wg-kubernetes" } oifname { "cni0", "wg-kubernetes" } accept`} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	if _, err := (Baseline{Pods: []string{"cni0 accept; drop"}}).Ruleset(); err == nil {
		t.Error("a pod bridge name with nft syntax in it was accepted")
	}
}

func TestRuleset(t *testing.T) {
	b := Baseline{Planes: []string{"wg-obs", "wg-control", "wg-kubernetes", "wg-control"}, WireGuardPorts: []int{51822, 51820, 51821},
		TCPPorts: []int{7445, 7444, 7443}}
	got, err := b.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		// Replaced whole in one transaction: created if missing, then deleted and defined.
		"table inet kubedos\ndelete table inet kubedos\ntable inet kubedos {\n",
		"type filter hook input priority filter; policy drop;",
		"ct state established,related accept",
		`iifname "lo" accept`,
		`iifname { "wg-control", "wg-kubernetes", "wg-obs" } accept`,
		"udp dport { 51820, 51821, 51822 } accept",
		"tcp dport { 7443, 7444, 7445 } accept",
		"type filter hook forward priority filter; policy drop;",
		`iifname { "wg-control", "wg-kubernetes", "wg-obs" } oifname { "wg-control", "wg-kubernetes", "wg-obs" } accept`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	// Nothing open that was not asked for.
	if strings.Count(got, "accept") != 8 {
		t.Errorf("ruleset has %d accept rules, want 8:\n%s", strings.Count(got, "accept"), got)
	}
	// No planes, no ports: only loopback, ICMP and replies get in.
	bare, err := Baseline{}.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(bare, "dport") || strings.Count(bare, "iifname") != 1 {
		t.Errorf("bare ruleset:\n%s", bare)
	}
}

func TestRulesetRefuses(t *testing.T) {
	cases := []struct {
		name string
		b    Baseline
		want string
	}{
		{"interface name too long", Baseline{Planes: []string{"wg-observability"}}, `"wg-observability" is not an interface name`},
		{"quote in a name", Baseline{Planes: []string{`wg"; flush ruleset`}}, "is not an interface name"},
		{"port zero", Baseline{TCPPorts: []int{0}}, "port 0 is out of range"},
		{"port too high", Baseline{WireGuardPorts: []int{70000}}, "port 70000 is out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.b.Ruleset(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

// A load balancer accepts VRRP from its peers only and the API port on the
// VIP only; nft itself checks the ruleset when it can (nft -c needs no
// change of the machine's rules).
func TestRulesetLoadBalancer(t *testing.T) {
	b := Baseline{Planes: []string{"wg-kubernetes"}, TCPPorts: []int{7444},
		VRRPPeers: []netip.Addr{netip.MustParseAddr("10.10.10.53"), netip.MustParseAddr("10.10.10.51"), netip.MustParseAddr("fd00::51")},
		Services:  []netip.AddrPort{netip.MustParseAddrPort("10.10.10.100:6443")},
		Allowed:   []Allowed{{2380, []netip.Addr{netip.MustParseAddr("10.10.10.22"), netip.MustParseAddr("10.10.10.21")}}}}
	got, err := b.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ip saddr { 10.10.10.51, 10.10.10.53 } meta l4proto 112 accept",
		"ip6 saddr { fd00::51 } meta l4proto 112 accept",
		"ip daddr 10.10.10.100 tcp dport 6443 accept",
		"ip saddr { 10.10.10.21, 10.10.10.22 } tcp dport 2380 accept",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "dport { 6443") || strings.Count(got, "112") != 2 {
		t.Errorf("6443 open to every address, or VRRP from anyone:\n%s", got)
	}
	for name, bad := range map[string]Baseline{
		"allowed from nobody":  {Allowed: []Allowed{{Port: 2379}}},
		"allowed from nothing": {Allowed: []Allowed{{Port: 2379, From: []netip.Addr{{}}}}},
		"allowed port":         {Allowed: []Allowed{{Port: 0, From: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}},
		"peer":                 {VRRPPeers: []netip.Addr{{}}},
		"service":              {Services: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("10.10.10.100"), 0)}},
	} {
		if _, err := bad.Ruleset(); err == nil {
			t.Errorf("%s: a bad %s was accepted", name, name)
		}
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nft is not installed: ruleset not checked by nft")
	}
	check := func(script string) error {
		f := filepath.Join(t.TempDir(), "rules.nft")
		if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(nft, "-c", "-f", f).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	bare, _ := Baseline{}.Ruleset()
	if err := check(bare); err != nil {
		t.Skipf("nft -c cannot check here (%v)", err)
	}
	if err := check(got); err != nil {
		t.Fatalf("nft -c refuses the load balancer's ruleset: %v\n%s", err, got)
	}
	if err := check(strings.Replace(got, "meta l4proto 112", "meta l4proto vrrpx", 1)); err == nil {
		t.Fatal("nft -c accepts a broken ruleset: the check proves nothing")
	}
}
