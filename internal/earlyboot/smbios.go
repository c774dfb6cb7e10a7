package earlyboot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// OEMStringsGlob finds SMBIOS type 11 (OEM strings) tables, where the
// deploy step puts a node's name, its hub's address and its LAN address (qemu -smbios
// type=11,value=kubedos.name=w-1). They are per machine, not per image, and
// not part of the measured boot policy.
var OEMStringsGlob = "/sys/firmware/dmi/entries/11-*/raw"

// OEMStrings returns the key=value pairs with the "kubedos." prefix from
// every SMBIOS type 11 table.
func OEMStrings() (map[string]string, error) {
	files, _ := filepath.Glob(OEMStringsGlob)
	out := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read SMBIOS OEM strings: %w", err)
		}
		strs, err := parseSMBIOSStrings(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, s := range strs {
			if k, v, ok := strings.Cut(s, "="); ok && strings.HasPrefix(k, "kubedos.") {
				out[k] = v
			}
		}
	}
	return out, nil
}

// parseSMBIOSStrings returns the string set after a structure's formatted
// area: header byte 1 is the formatted length; strings are NUL-terminated,
// the set ends with an empty string.
func parseSMBIOSStrings(raw []byte) ([]string, error) {
	if len(raw) < 4 || int(raw[1]) > len(raw) || raw[1] < 4 {
		return nil, fmt.Errorf("SMBIOS structure too short (%d bytes)", len(raw))
	}
	var out []string
	rest := raw[raw[1]:]
	for len(rest) > 0 {
		i := strings.IndexByte(string(rest), 0)
		if i <= 0 {
			break
		}
		out = append(out, string(rest[:i]))
		rest = rest[i+1:]
	}
	return out, nil
}
