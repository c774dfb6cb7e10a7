package firewall

import (
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
