// Package earlyboot is kubedos-init, the initrd's PID 1: it loads the few
// modules the root needs, finds the slot's partitions by GPT label, opens the
// root through dm-verity with the roothash from the (measured) kernel command
// line, mounts state and data, and switches root to systemd. It fails closed:
// any error stops the boot with a message on the console.
package earlyboot

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Config is what the UKI's command line tells the initrd. The command line is
// measured into PCR 11 with the UKI, so these values are attested. It names
// no slot: the slot is the one whose partition UUIDs derive from RootHash,
// so one signed UKI (one PCR 11) serves either slot.
type Config struct {
	Build      string
	RootHash   string
	Salt       string
	DataBlocks uint64
}

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Command line keys.
const (
	KeyBuild      = "kubedos.build"
	KeyRootHash   = "kubedos.roothash"
	KeySalt       = "kubedos.salt"
	KeyDataBlocks = "kubedos.datablocks"
)

// ParseCmdline extracts and checks the kubedos keys of a kernel command line.
// Every missing or malformed key is reported.
func ParseCmdline(cmdline string) (Config, error) {
	kv := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	var c Config
	var bad []string
	check := func(key string, ok bool) {
		if !ok {
			bad = append(bad, fmt.Sprintf("%s=%q", key, kv[key]))
		}
	}
	c.Build = kv[KeyBuild]
	check(KeyBuild, c.Build != "")
	c.RootHash = kv[KeyRootHash]
	check(KeyRootHash, hexRE.MatchString(c.RootHash))
	c.Salt = kv[KeySalt]
	check(KeySalt, hexRE.MatchString(c.Salt))
	n, err := strconv.ParseUint(kv[KeyDataBlocks], 10, 64)
	c.DataBlocks = n
	check(KeyDataBlocks, err == nil && n > 0)
	if len(bad) > 0 {
		return Config{}, fmt.Errorf("kernel command line: missing or malformed %s", strings.Join(bad, ", "))
	}
	return c, nil
}

// Cmdline renders the kubedos keys (the build writes this into the UKI).
func (c Config) Cmdline() string {
	return fmt.Sprintf("%s=%s %s=%s %s=%s %s=%d", KeyBuild, c.Build,
		KeyRootHash, c.RootHash, KeySalt, c.Salt, KeyDataBlocks, c.DataBlocks)
}
