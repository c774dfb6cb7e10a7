package earlyboot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/nodeid"
)

// LANNetworkFile is where kubedos-init puts the machine's LAN address for
// systemd-networkd. It sorts before the image's DHCP file
// (/etc/systemd/network/80-kubedos-lan.network), so it wins for the same
// interface; /run keeps it per boot, derived each time from SMBIOS.
var LANNetworkFile = "/run/systemd/network/10-kubedos-lan.network"

// LANNetworkUnit is the networkd unit giving the LAN interface addr (with
// its prefix length) and no other: no DHCP, no IPv6 autoconfiguration.
// gateway, when valid, becomes the default route.
func LANNetworkUnit(addr, gateway string) ([]byte, error) {
	id, err := nodeid.Decode(map[string]string{nodeid.KeyAddress: addr, nodeid.KeyGateway: gateway})
	if err != nil {
		return nil, err
	}
	if !id.Address.IsValid() {
		return nil, fmt.Errorf("%s is empty", nodeid.KeyAddress)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kubedos from kubedos.address (SMBIOS: the spec's node address; or the console's Day 0 form).\n")
	fmt.Fprintf(&b, "[Match]\nName=en* eth*\n\n[Network]\nAddress=%s\nDHCP=no\nIPv6AcceptRA=no\nLinkLocalAddressing=no\n", id.Address)
	if id.Gateway.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", id.Gateway)
	}
	return []byte(b.String()), nil
}

// WriteLAN gives the LAN interface the address the deploy step put in
// SMBIOS (kubedos.address), or the one typed on the console (IdentityFile),
// by writing LANNetworkFile before systemd starts, so networkd configures
// it from its first start. Without the pair the image's DHCP configuration
// stays in force.
func WriteLAN(oem map[string]string) (string, error) {
	addr := oem[nodeid.KeyAddress]
	if addr == "" {
		return "", nil
	}
	unit, err := LANNetworkUnit(addr, oem[nodeid.KeyGateway])
	if err != nil {
		return "", err
	}
	// networkd runs as systemd-network: the directory must be readable.
	if err := os.MkdirAll(filepath.Dir(LANNetworkFile), 0o755); err != nil {
		return "", err
	}
	return addr, durable.WriteFile(LANNetworkFile, unit, 0o644)
}
