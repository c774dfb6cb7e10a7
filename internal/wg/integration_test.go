//go:build integration

package wg

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// userspaceDevice runs wireguard-go on a TUN named name with its UAPI
// socket where wgctrl looks for it: the host kernel has no WireGuard, so
// this stands in for the guest kernel's module; Apply and Read cannot tell.
func userspaceDevice(t *testing.T, name string) {
	t.Helper()
	tdev, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		t.Skipf("no TUN here (root and /dev/net/tun needed): %v", err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, name+": "))
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	uapi, err := ipc.UAPIListen(name, f)
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	t.Cleanup(func() { uapi.Close(); dev.Close() })
}

// Two planes' ends on this host, configured by Apply as the agent does,
// complete a real WireGuard handshake over loopback; Read reports it, and
// a second Apply with the same peers leaves the session alone.
func TestApplyHandshake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	a, b := "kdwga"+suffix, "kdwgb"+suffix
	userspaceDevice(t, a)
	userspaceDevice(t, b)
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	portA, portB := freeUDPPort(t), freeUDPPort(t)
	ifa := Interface{Plane: "control", Name: a, Address: "10.199.0.1/24", ListenPort: portA, Forward: true,
		Peers: []Peer{{Name: "b", PublicKey: kb.PublicKey().String(), Endpoint: fmt.Sprintf("127.0.0.1:%d", portB), AllowedIPs: []string{"10.199.0.2/32"}}}}
	ifb := Interface{Plane: "control", Name: b, Address: "10.199.1.2/24", ListenPort: portB,
		Peers: []Peer{{Name: "a", PublicKey: ka.PublicKey().String(), Endpoint: fmt.Sprintf("127.0.0.1:%d", portA), AllowedIPs: []string{"10.199.0.0/24"}, KeepaliveSeconds: 1}}}
	ctx := context.Background()
	if err := Apply(ctx, ifa, ka); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, ifb, kb); err != nil {
		t.Fatal(err)
	}
	var sa, sb Status
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		sa, sb = Read(ifa), Read(ifb)
		if len(sa.Peers) == 1 && !sa.Peers[0].LatestHandshake.IsZero() && len(sb.Peers) == 1 && !sb.Peers[0].LatestHandshake.IsZero() {
			break
		}
	}
	for _, st := range []Status{sa, sb} {
		if st.Error != "" || !st.Up || len(st.Peers) != 1 || st.Peers[0].LatestHandshake.IsZero() || st.Peers[0].RxBytes == 0 {
			t.Fatalf("%s: no handshake: %+v", st.Interface, st)
		}
	}
	if sa.PublicKey != ka.PublicKey().String() || sa.Port != portA || sa.Peers[0].Name != "b" || sa.Addresses[0] != "10.199.0.1/24" {
		t.Errorf("status of %s: %+v", a, sa)
	}
	if fw, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + a + "/forwarding"); err != nil || string(fw) != "1\n" {
		t.Errorf("forwarding on %s: %q %v", a, fw, err)
	}
	// Applying the same again keeps the session (no wholesale replace).
	first := sb.Peers[0].LatestHandshake
	if err := Apply(ctx, ifb, kb); err != nil {
		t.Fatal(err)
	}
	if again := Read(ifb); again.Peers[0].LatestHandshake.Before(first) || again.Peers[0].LatestHandshake.IsZero() {
		t.Errorf("re-apply dropped the session: %+v", again.Peers[0])
	}
	// A peer no longer wanted is removed.
	ifa.Peers = nil
	if err := Apply(ctx, ifa, ka); err != nil {
		t.Fatal(err)
	}
	if st := Read(ifa); len(st.Peers) != 0 {
		t.Errorf("removed peer still there: %+v", st.Peers)
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
