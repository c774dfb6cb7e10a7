package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestNewSegment(t *testing.T) {
	for _, tc := range []struct {
		cidr, gw, want string
	}{
		{"10.20.0.0/24", "10.20.0.1", ""},
		{"10.20.0.0/24", "10.21.0.1", "networking.lan.gateway 10.21.0.1 is outside networking.lan.cidr"},
		{"10.20.0.0/33", "10.20.0.1", "networking.lan.cidr"},
		{"10.20.0.0/24", "nope", "networking.lan.gateway"},
	} {
		s, err := NewSegment("local", tc.cidr, tc.gw)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s %s: %v", tc.cidr, tc.gw, err)
				continue
			}
			if len(s.HostIf) > 15 || s.Netns != "kubedos-local" || s.Gateway.String() != "10.20.0.1/24" {
				t.Errorf("segment %+v", s)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: error %v, want %q", tc.cidr, tc.gw, err, tc.want)
		}
	}
	s, _ := NewSegment("local", "10.20.0.0/24", "10.20.0.1")
	if p, err := s.NodeAddress("10.20.0.10"); err != nil || p.String() != "10.20.0.10/24" {
		t.Errorf("NodeAddress = %v, %v", p, err)
	}
	for _, bad := range []string{"10.30.0.10", "10.20.0.1", "x"} {
		if _, err := s.NodeAddress(bad); err == nil {
			t.Errorf("NodeAddress(%s) accepted", bad)
		}
	}
	if a, again := MAC("a/b"), MAC("a/b"); a != again || a == MAC("a/c") || !strings.HasPrefix(a, "52:54:00:") {
		t.Error("MAC is not a stable per-seed QEMU address")
	}
}

// TestSegmentLifecycle makes a real segment (root): up twice, a tap on the
// bridge, the gateway reachable from inside over the bridge, a LAN that
// overlaps the host refused, and down leaves neither namespace nor veth.
func TestSegmentLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	ctx := context.Background()
	s, err := NewSegment(fmt.Sprintf("unit-%d", os.Getpid()), "10.251.7.0/24", "10.251.7.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Down(ctx) })
	for i := 0; i < 2; i++ {
		if err := s.Up(ctx); err != nil {
			t.Fatalf("up %d: %v", i+1, err)
		}
	}
	if err := s.AddTap(ctx, "tap100"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTap(ctx, "tap100"); err != nil {
		t.Fatalf("second AddTap: %v", err)
	}
	out, err := exec.Command("ip", "-n", s.Netns, "-o", "link", "show", "master", segmentBridge).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tap100", segmentUplink} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bridge ports lack %s:\n%s", want, out)
		}
	}
	ifc, err := net.InterfaceByName(s.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := ifc.Addrs()
	if len(addrs) == 0 || addrs[0].String() != "10.251.7.1/24" {
		t.Errorf("host end addresses %v", addrs)
	}
	// A host inside the segment (an address on the bridge) reaches the
	// gateway across the veth: the path every node takes to the hub.
	if out, err := exec.Command("ip", "-n", s.Netns, "addr", "add", "10.251.7.200/24", "dev", segmentBridge).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lis, err := net.Listen("tcp", "10.251.7.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		if c, err := lis.Accept(); err == nil {
			_, _ = c.Write([]byte("hub\n"))
			c.Close()
		}
	}()
	got, err := exec.Command("ip", "netns", "exec", s.Netns, "socat", "-T2", "STDIO", "TCP:"+lis.Addr().String()).CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "hub" {
		t.Errorf("from inside the segment: %q, %v", got, err)
	}

	over, _ := NewSegment("overlap", "127.0.0.0/8", "127.0.0.2")
	if err := over.Up(ctx); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("a LAN over the host's loopback: %v", err)
	}
	if over.Exists() {
		t.Error("a refused segment left its namespace")
	}

	if err := s.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Exists() {
		t.Error("namespace left after down")
	}
	if _, err := net.InterfaceByName(s.HostIf); err == nil {
		t.Error("host veth left after down")
	}
	if err := s.Down(ctx); err != nil {
		t.Errorf("second down: %v", err)
	}
}
