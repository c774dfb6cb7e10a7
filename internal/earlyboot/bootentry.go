package earlyboot

import (
	"fmt"
	"regexp"
	"strconv"
)

// ESPLinuxDir holds the UKIs (Boot Loader Specification type #2 entries).
const ESPLinuxDir = "EFI/Linux"

// BootEntry is one kubedos UKI on the ESP, named
// kubedos-<gen>-<build>[+<left>[-<done>]].efi.
type BootEntry struct {
	Gen   int
	Build string
	// Left and Done are the boot counter: Counted is false for a blessed
	// entry (no counter), Left == 0 for one that ran out of tries.
	Counted    bool
	Left, Done int
}

var entryRE = regexp.MustCompile(`^kubedos-([0-9]{1,9})-([0-9a-f]{4,64})(?:\+([0-9]{1,2})(?:-([0-9]{1,2}))?)?\.efi$`)

// ParseBootEntry reads a UKI's file name; ok is false for any other file.
func ParseBootEntry(name string) (BootEntry, bool) {
	m := entryRE.FindStringSubmatch(name)
	if m == nil {
		return BootEntry{}, false
	}
	e := BootEntry{Build: m[2]}
	e.Gen, _ = strconv.Atoi(m[1])
	if m[3] != "" {
		e.Counted = true
		e.Left, _ = strconv.Atoi(m[3])
		if m[4] != "" {
			e.Done, _ = strconv.Atoi(m[4])
		}
	}
	return e, true
}

// Name is the entry's file name.
func (e BootEntry) Name() string {
	n := fmt.Sprintf("kubedos-%d-%s", e.Gen, e.Build)
	if e.Counted {
		n += fmt.Sprintf("+%d", e.Left)
		if e.Done > 0 {
			n += fmt.Sprintf("-%d", e.Done)
		}
	}
	return n + ".efi"
}

// Bad says the entry ran out of tries: systemd-boot sorts it last.
func (e BootEntry) Bad() bool { return e.Counted && e.Left == 0 }

// UKIEntryPath is a UKI's path on the ESP. systemd-boot boots the highest
// generation that has tries left (or is blessed); an upgrade writes
// generation n+1 with tries, so a boot that is never marked good runs its
// tries down and the previous entry boots again.
func UKIEntryPath(gen int, buildID string, tries int) string {
	return ESPLinuxDir + "/" + BootEntry{Gen: gen, Build: buildID, Counted: tries > 0, Left: tries}.Name()
}
