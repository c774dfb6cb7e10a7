// Package nodeid is the identity a deploy step hands to a machine through
// SMBIOS (type 11 OEM strings on qemu, the type 1 SKU on Proxmox VE, which
// sets no OEM strings), or that an operator types on a bare-metal node's
// console (kept in a file on the state partition, File and ParseFile): the
// node's name, its hub, and its LAN address. One encoder for every target
// and one decoder for kubedos-init and kubedosd, so the two ends cannot
// drift apart.
package nodeid

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// The keys of the kubedos.key=value pairs.
const (
	KeyName    = "kubedos.name"
	KeyHub     = "kubedos.hub"
	KeyAddress = "kubedos.address"
	KeyGateway = "kubedos.gateway"
)

// Prefix starts every pair: other SMBIOS strings are not ours.
const Prefix = "kubedos."

// maxValue bounds each value: SMBIOS strings reach a node from whoever
// made the VM, and they are logged.
const maxValue = 253

// ErrInvalid classes every decoding and encoding problem.
var ErrInvalid = errdefs.New(errdefs.ErrInvalid, "invalid node identity")

// Identity is what a machine learns about itself before it has a
// certificate. Every field is optional on its own; Validate says which
// combinations are not.
type Identity struct {
	// Name is the spec node's name.
	Name string
	// Hub is the hub's host:port the node enrolls with; empty on a
	// standalone boot.
	Hub string
	// Address is the node's LAN address with the LAN's prefix length.
	Address netip.Prefix
	// Gateway, when valid, becomes the LAN's default route.
	Gateway netip.Addr
}

// FieldError is a problem with one field: the console's form shows Want
// next to the field, logs show Error.
type FieldError struct {
	Key, Value string
	Want       string
}

// Error names the key, not the source: SMBIOS and the state file carry the
// same pairs, and the caller says which it read.
func (e *FieldError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "…"
	}
	return fmt.Sprintf("%s %q: %s", e.Key, v, e.Want)
}

// Unwrap classes every FieldError as ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(key, value, want string) error { return &FieldError{Key: key, Value: value, Want: want} }

// Validate reports every problem, each naming its field.
func (id Identity) Validate() error {
	var errs []error
	if id.Name != "" && !validName(id.Name) {
		errs = append(errs, fieldErr(KeyName, id.Name, "want a DNS label (a-z, 0-9, -)"))
	}
	if id.Hub != "" {
		if err := checkHub(id.Hub); err != nil {
			errs = append(errs, err)
		}
		if id.Name == "" {
			errs = append(errs, fmt.Errorf("%w: a hub is named but no %s for this node", ErrInvalid, KeyName))
		}
	}
	if id.Address.IsValid() && (!id.Address.Addr().Is4() || id.Address.Bits() == 32) {
		errs = append(errs, fieldErr(KeyAddress, id.Address.String(), "want an IPv4 address with the LAN's prefix length, like 10.20.0.10/24"))
	}
	if id.Gateway.IsValid() {
		switch {
		case !id.Address.IsValid():
			errs = append(errs, fieldErr(KeyGateway, id.Gateway.String(), "a gateway needs "+KeyAddress))
		case !id.Address.Masked().Contains(id.Gateway):
			errs = append(errs, fieldErr(KeyGateway, id.Gateway.String(), "not an address inside "+id.Address.Masked().String()))
		}
	}
	return errors.Join(errs...)
}

// Strings encodes the identity as kubedos.key=value pairs in a fixed
// order, only the fields that are set; it refuses an invalid identity.
func (id Identity) Strings() ([]string, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	var out []string
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	add(KeyName, id.Name)
	add(KeyHub, id.Hub)
	if id.Address.IsValid() {
		add(KeyAddress, id.Address.String())
	}
	if id.Gateway.IsValid() {
		add(KeyGateway, id.Gateway.String())
	}
	return out, nil
}

// Pairs collects the kubedos.* pairs of SMBIOS strings into pairs, the
// first of each key winning. A string may hold several pairs separated by
// ";" (the SKU form); strings that are not ours are ignored.
func Pairs(pairs map[string]string, strs ...string) {
	for _, s := range strs {
		for _, p := range strings.Split(s, ";") {
			if k, v, ok := strings.Cut(p, "="); ok && strings.HasPrefix(k, Prefix) {
				if _, seen := pairs[k]; !seen {
					pairs[k] = v
				}
			}
		}
	}
}

// Decode reads an identity from its pairs; every problem is reported,
// each naming its field. Keys it does not know are ignored, so an older
// node boots on a newer deploy's strings.
func Decode(pairs map[string]string) (Identity, error) {
	var id Identity
	var errs []error
	get := func(k string) string {
		v := pairs[k]
		if len(v) > maxValue {
			errs = append(errs, fieldErr(k, v, fmt.Sprintf("longer than %d bytes", maxValue)))
			return ""
		}
		return v
	}
	id.Name, id.Hub = get(KeyName), get(KeyHub)
	if v := get(KeyAddress); v != "" {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			errs = append(errs, fieldErr(KeyAddress, v, "want an IPv4 address with the LAN's prefix length, like 10.20.0.10/24"))
		} else {
			id.Address = p
		}
	}
	if v := get(KeyGateway); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			errs = append(errs, fieldErr(KeyGateway, v, "want an IP address"))
		} else {
			id.Gateway = a
		}
	}
	if err := errors.Join(append(errs, id.Validate())...); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// checkHub accepts host:port with a port in 1–65535.
func checkHub(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return fieldErr(KeyHub, v, "want host:port, like 10.20.0.1:7443")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fieldErr(KeyHub, v, "the port is not 1–65535")
	}
	return nil
}

func validName(s string) bool {
	if len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// File is the identity as the state partition keeps it: one key=value pair
// a line, in Strings' order. It refuses an invalid identity.
func (id Identity) File() ([]byte, error) {
	strs, err := id.Strings()
	if err != nil {
		return nil, err
	}
	return []byte(strings.Join(strs, "\n") + "\n"), nil
}

// ParseFile collects the pairs of a File into pairs, as Pairs does for
// SMBIOS strings: a key already in pairs wins, so SMBIOS read first
// overrides the file.
func ParseFile(pairs map[string]string, b []byte) {
	for _, line := range strings.Split(string(b), "\n") {
		Pairs(pairs, strings.TrimSpace(line))
	}
}
