package earlyboot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/nodeid"
)

// OEMStringsGlob finds SMBIOS type 11 (OEM strings) tables, where the
// deploy step puts a node's name, its hub's address and its LAN address (qemu -smbios
// type=11,value=kubedos.name=w-1). They are per machine, not per image, and
// not part of the measured boot policy.
var OEMStringsGlob = "/sys/firmware/dmi/entries/11-*/raw"

// SystemInfoGlob finds the SMBIOS type 1 (system information) table. Its
// SKU Number carries the same pairs, ";"-separated, where the hypervisor
// lets a deploy step set type 1 fields but not type 11: Proxmox VE's API
// (smbios1: sku=…).
var SystemInfoGlob = "/sys/firmware/dmi/entries/1-*/raw"

// OEMStrings returns the key=value pairs with the "kubedos." prefix from
// every SMBIOS type 11 table and from the type 1 SKU Number; type 11 wins
// when both name a key.
func OEMStrings() (map[string]string, error) {
	out := map[string]string{}
	if err := eachTable(OEMStringsGlob, func(raw []byte) error {
		strs, err := parseSMBIOSStrings(raw)
		nodeid.Pairs(out, strs...)
		return err
	}); err != nil {
		return nil, err
	}
	if err := eachTable(SystemInfoGlob, func(raw []byte) error {
		sku, err := systemSKU(raw)
		nodeid.Pairs(out, sku)
		return err
	}); err != nil {
		return nil, err
	}
	return out, nil
}

func eachTable(glob string, fn func(raw []byte) error) error {
	files, _ := filepath.Glob(glob)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read SMBIOS table: %w", err)
		}
		if err := fn(raw); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// skuOffset is where a type 1 table keeps the SKU Number's string index
// (SMBIOS 2.4 and later; the formatted area is then at least 0x1b long).
const skuOffset = 0x19

// systemSKU returns the SKU Number of a type 1 table, "" when it has none.
func systemSKU(raw []byte) (string, error) {
	strs, err := parseSMBIOSStrings(raw)
	if err != nil {
		return "", err
	}
	if int(raw[1]) <= skuOffset {
		return "", nil
	}
	i := int(raw[skuOffset])
	if i == 0 || i > len(strs) {
		return "", nil
	}
	return strs[i-1], nil
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
