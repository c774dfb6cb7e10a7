package wg

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Apply makes the kernel interface match ifc: the link is created if
// missing, the address set, the key and port set, peers that are no longer
// wanted removed and the wanted ones added or updated in place — never a
// wholesale replace, which would drop live sessions — and the link brought
// up. It runs ip(8) from iproute2 for the link and address (the image has
// it) and talks to WireGuard over netlink with wgctrl.
func Apply(ctx context.Context, ifc Interface, priv wgtypes.Key) error {
	if _, err := net.InterfaceByName(ifc.Name); err != nil {
		if err := ip(ctx, "link", "add", ifc.Name, "type", "wireguard"); err != nil {
			return fmt.Errorf("plane %s: %w", ifc.Plane, err)
		}
	}
	if err := ip(ctx, "address", "replace", ifc.Address, "dev", ifc.Name); err != nil {
		return fmt.Errorf("plane %s: %w", ifc.Plane, err)
	}
	cfg, err := deviceConfig(ifc, priv)
	if err != nil {
		return err
	}
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("plane %s: wireguard control: %w", ifc.Plane, err)
	}
	defer c.Close()
	dev, err := c.Device(ifc.Name)
	if err != nil {
		return fmt.Errorf("plane %s: read %s: %w", ifc.Plane, ifc.Name, err)
	}
	cfg.Peers = append(cfg.Peers, removals(dev.Peers, cfg.Peers)...)
	if err := c.ConfigureDevice(ifc.Name, cfg); err != nil {
		return fmt.Errorf("plane %s: configure %s: %w", ifc.Plane, ifc.Name, err)
	}
	if err := ip(ctx, "link", "set", ifc.Name, "up"); err != nil {
		return fmt.Errorf("plane %s: %w", ifc.Plane, err)
	}
	for _, r := range ifc.Routes {
		if _, err := netip.ParsePrefix(r); err != nil {
			return fmt.Errorf("plane %s: route %q: %w", ifc.Plane, r, err)
		}
		if err := ip(ctx, "route", "replace", r, "dev", ifc.Name); err != nil {
			return fmt.Errorf("plane %s: %w", ifc.Plane, err)
		}
	}
	if ifc.Forward {
		f := filepath.Join("/proc/sys/net/ipv4/conf", ifc.Name, "forwarding")
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("plane %s: forwarding: %w", ifc.Plane, err)
		}
	}
	return nil
}

// deviceConfig turns ifc into wgctrl's configuration (without removals).
func deviceConfig(ifc Interface, priv wgtypes.Key) (wgtypes.Config, error) {
	port := ifc.ListenPort
	cfg := wgtypes.Config{PrivateKey: &priv, ListenPort: &port}
	for _, p := range ifc.Peers {
		pc := wgtypes.PeerConfig{ReplaceAllowedIPs: true}
		var err error
		if pc.PublicKey, err = wgtypes.ParseKey(p.PublicKey); err != nil {
			return cfg, fmt.Errorf("plane %s: peer %s: public key: %w", ifc.Plane, p.Name, err)
		}
		if p.Endpoint != "" {
			ap, err := netip.ParseAddrPort(p.Endpoint)
			if err != nil {
				return cfg, fmt.Errorf("plane %s: peer %s: endpoint: %w", ifc.Plane, p.Name, err)
			}
			pc.Endpoint = net.UDPAddrFromAddrPort(ap)
		}
		for _, a := range p.AllowedIPs {
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				return cfg, fmt.Errorf("plane %s: peer %s: allowed IP: %w", ifc.Plane, p.Name, err)
			}
			pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())})
		}
		if p.KeepaliveSeconds > 0 {
			d := time.Duration(p.KeepaliveSeconds) * time.Second
			pc.PersistentKeepaliveInterval = &d
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	return cfg, nil
}

// removals are the peers the device has that want does not.
func removals(have []wgtypes.Peer, want []wgtypes.PeerConfig) []wgtypes.PeerConfig {
	var out []wgtypes.PeerConfig
	for _, h := range have {
		if !slices.ContainsFunc(want, func(w wgtypes.PeerConfig) bool { return w.PublicKey == h.PublicKey }) {
			out = append(out, wgtypes.PeerConfig{PublicKey: h.PublicKey, Remove: true})
		}
	}
	return out
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Status is what the kernel says of one plane's interface.
type Status struct {
	Plane     string       `json:"plane"`
	Interface string       `json:"interface"`
	Up        bool         `json:"up"`
	Addresses []string     `json:"addresses"`
	PublicKey string       `json:"publicKey,omitempty"`
	Port      int          `json:"listenPort,omitempty"`
	Peers     []PeerStatus `json:"peers"`
	Error     string       `json:"error,omitempty"`
}

// PeerStatus is one peer as the kernel sees it. A handshake proves both
// sides hold each other's keys and that UDP passes between them.
type PeerStatus struct {
	Name            string    `json:"name,omitempty"`
	PublicKey       string    `json:"publicKey"`
	Endpoint        string    `json:"endpoint,omitempty"`
	AllowedIPs      []string  `json:"allowedIPs"`
	LatestHandshake time.Time `json:"latestHandshake,omitzero"`
	RxBytes         int64     `json:"rxBytes"`
	TxBytes         int64     `json:"txBytes"`
}

// Read reports the interface of ifc, naming peers by ifc's peer list. An
// interface that does not exist is a Status with Error set, not an error:
// the caller reports every plane.
func Read(ifc Interface) Status {
	st := Status{Plane: string(ifc.Plane), Interface: ifc.Name, Addresses: []string{}, Peers: []PeerStatus{}}
	nif, err := net.InterfaceByName(ifc.Name)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Up = nif.Flags&net.FlagUp != 0
	if addrs, err := nif.Addrs(); err == nil {
		for _, a := range addrs {
			st.Addresses = append(st.Addresses, a.String())
		}
	}
	c, err := wgctrl.New()
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer c.Close()
	dev, err := c.Device(ifc.Name)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.PublicKey, st.Port = dev.PublicKey.String(), dev.ListenPort
	names := map[string]string{}
	for _, p := range ifc.Peers {
		names[p.PublicKey] = p.Name
	}
	for _, p := range dev.Peers {
		ps := PeerStatus{Name: names[p.PublicKey.String()], PublicKey: p.PublicKey.String(), AllowedIPs: []string{},
			LatestHandshake: p.LastHandshakeTime, RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes}
		if p.Endpoint != nil {
			ps.Endpoint = p.Endpoint.String()
		}
		for _, a := range p.AllowedIPs {
			ps.AllowedIPs = append(ps.AllowedIPs, a.String())
		}
		st.Peers = append(st.Peers, ps)
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}
