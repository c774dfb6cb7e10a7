package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf16"

	"github.com/kubedos/kubedos/internal/efi"
)

// PCRSecureBootPolicy is PCR 7, where the firmware measures the Secure Boot
// state and the database entries that authorised loaded images.
const PCRSecureBootPolicy = 7

// SecureBootVars are the contents of the Secure Boot variables as the firmware
// holds them at boot: each the raw variable data, i.e. EFI_SIGNATURE_LISTs
// back to back (the .esl files), without the authentication header of a .auth
// file. An unset variable (dbx in a fresh OVMF store) is nil.
type SecureBootVars struct {
	PK, KEK, DB, DBX []byte
}

// PredictPCR7 returns the PCR 7 events of a boot with Secure Boot enabled and
// enforced (the SecureBoot variable is 1) and the given variables, in which
// images were authorised by the db entries in authorities, in load order.
// Each authority is an EFI_SIGNATURE_DATA (owner efi.GUID ‖ DER certificate) that
// must be in vars.DB; see FindSignatureData. Repeated authorities are measured
// once, as the firmware does.
//
// The dbt and dbr variables are not modelled: kubedos never sets them.
func PredictPCR7(vars SecureBootVars, authorities ...[]byte) ([]Event, error) {
	for _, v := range []struct {
		name string
		data []byte
	}{{"PK", vars.PK}, {"KEK", vars.KEK}, {"db", vars.DB}, {"dbx", vars.DBX}} {
		if _, err := ParseSignatureLists(v.data); err != nil {
			return nil, fmt.Errorf("PCR 7: variable %s: %w", v.name, err)
		}
	}
	if len(vars.PK) == 0 {
		return nil, fmt.Errorf("%w: PCR 7: PK is empty; Secure Boot would be in setup mode", ErrInput)
	}
	if len(authorities) == 0 {
		return nil, fmt.Errorf("%w: PCR 7: no authority (db entry) for the loaded images", ErrInput)
	}
	events := []Event{
		variableEvent(EvEFIVariableDriverConfig, efi.GlobalVariable, "SecureBoot", []byte{1}),
		variableEvent(EvEFIVariableDriverConfig, efi.GlobalVariable, "PK", vars.PK),
		variableEvent(EvEFIVariableDriverConfig, efi.GlobalVariable, "KEK", vars.KEK),
		variableEvent(EvEFIVariableDriverConfig, efi.ImageSecurityDatabase, "db", vars.DB),
		variableEvent(EvEFIVariableDriverConfig, efi.ImageSecurityDatabase, "dbx", vars.DBX),
		separator(PCRSecureBootPolicy),
	}
	var seen [][]byte
	for i, a := range authorities {
		if len(a) <= 16 {
			return nil, fmt.Errorf("%w: PCR 7: authority %d: %d bytes is no EFI_SIGNATURE_DATA (owner efi.GUID + data)", ErrInput, i, len(a))
		}
		if !inDB(vars.DB, a) {
			return nil, fmt.Errorf("%w: PCR 7: authority %d (owner %s) is not an entry of db", ErrInput, i, efi.GUID(a[:16]))
		}
		dup := false
		for _, s := range seen {
			dup = dup || bytes.Equal(s, a)
		}
		if dup {
			continue
		}
		seen = append(seen, a)
		events = append(events, variableEvent(EvEFIVariableAuthority, efi.ImageSecurityDatabase, "db", a))
	}
	return events, nil
}

// inDB reports whether sigData is one EFI_SIGNATURE_DATA entry of db.
func inDB(db, sigData []byte) bool {
	lists, err := ParseSignatureLists(db)
	if err != nil {
		return false
	}
	for _, l := range lists {
		for _, e := range l.Entries {
			if bytes.Equal(e, sigData) {
				return true
			}
		}
	}
	return false
}

// variableEvent is a PCR 7 event for an EFI variable; its digest is the sha256
// of the UEFI_VARIABLE_DATA structure, which is also its event data.
func variableEvent(typ string, vendor efi.GUID, name string, data []byte) Event {
	desc := fmt.Sprintf("%s %s (%s), data length %d", variableDriverConfigDescPrefix, name, vendor, len(data))
	if typ == EvEFIVariableAuthority {
		desc = fmt.Sprintf("authority: %s entry, owner %s, data length %d", name, efi.GUID(data[:16]), len(data))
	}
	return Event{PCR: PCRSecureBootPolicy, Type: typ, Digest: sum(VariableData(vendor, name, data)), Description: desc}
}

// VariableData encodes UEFI_VARIABLE_DATA: VariableName (the vendor efi.GUID),
// UnicodeNameLength and VariableDataLength (u64 LE; the name length in UTF-16
// code units), UnicodeName (UTF-16LE, no NUL), VariableData.
func VariableData(vendor efi.GUID, name string, data []byte) []byte {
	u := utf16.Encode([]rune(name))
	b := make([]byte, 0, 16+8+8+2*len(u)+len(data))
	b = append(b, vendor[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(u)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, data...)
}
