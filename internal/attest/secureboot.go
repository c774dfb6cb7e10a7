package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unicode/utf16"

	"github.com/kubedos/kubedos/internal/efi"
	"github.com/kubedos/kubedos/internal/measure"
)

// checkSecureBoot finds the firmware's EV_EFI_VARIABLE_DRIVER_CONFIG event
// for the SecureBoot variable in PCR 7 and requires its data to be 1. The
// event's digest must be sha256 of its data (UEFI_VARIABLE_DATA), which binds
// the data to the PCR 7 value the log was replayed against; PCR 7 must
// therefore be quoted. The event format is in internal/measure's doc.
func checkSecureBoot(events []measure.LogEvent, pcrs map[int][]byte) error {
	if _, ok := pcrs[measure.PCRSecureBootPolicy]; !ok {
		return refuse(CheckSecureBoot, nil, "PCR 7 is not quoted: the SecureBoot event cannot be trusted")
	}
	found := 0
	for _, e := range events {
		if e.PCR != measure.PCRSecureBootPolicy || e.Type != measure.EvEFIVariableDriverConfig {
			continue
		}
		vendor, name, data, err := parseVariableData(e.Data)
		if err != nil || vendor != efi.GlobalVariable || name != "SecureBoot" {
			continue
		}
		found++
		if s := sha256.Sum256(e.Data); !bytes.Equal(s[:], e.Digest) {
			return refuse(CheckSecureBoot, nil, "log event %d (SecureBoot variable): digest %s is not sha256 of its data %x", e.Num, e.Digest, s)
		}
		if !bytes.Equal(data, []byte{1}) {
			return refuse(CheckSecureBoot, nil, "log event %d: the firmware measured SecureBoot = %x (want 01): Secure Boot is off", e.Num, data)
		}
	}
	switch found {
	case 0:
		return refuse(CheckSecureBoot, nil, "the log has no SecureBoot variable event in PCR 7")
	case 1:
		return nil
	}
	return refuse(CheckSecureBoot, nil, "the log has %d SecureBoot variable events in PCR 7, want 1", found)
}

// parseVariableData decodes UEFI_VARIABLE_DATA (see measure.VariableData):
// vendor GUID, name length and data length (u64 LE, the name in UTF-16 code
// units), the name in UTF-16LE, the data.
func parseVariableData(b []byte) (efi.GUID, string, []byte, error) {
	var g efi.GUID
	const header = 16 + 8 + 8
	if len(b) < header {
		return g, "", nil, fmt.Errorf("UEFI_VARIABLE_DATA: %d bytes, header needs %d", len(b), header)
	}
	copy(g[:], b)
	nameLen := binary.LittleEndian.Uint64(b[16:])
	dataLen := binary.LittleEndian.Uint64(b[24:])
	rest := uint64(len(b) - header)
	if nameLen > rest/2 || dataLen != rest-2*nameLen {
		return g, "", nil, fmt.Errorf("UEFI_VARIABLE_DATA: name %d units and data %d bytes do not fill %d bytes", nameLen, dataLen, rest)
	}
	u := make([]uint16, nameLen)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[header+2*i:])
	}
	return g, string(utf16.Decode(u)), b[header+2*nameLen:], nil
}
